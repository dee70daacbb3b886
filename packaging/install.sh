#!/usr/bin/env bash
# Installs pkcscca from this source tree, or removes it again, without make.
#
#   packaging/install.sh [--prefix DIR] [--binary FILE] [--divert]
#   packaging/install.sh [--prefix DIR] --uninstall
#
# Installs (default prefix /usr/local, so no file of a Debian package is touched):
#   PREFIX/sbin/pkcscca                               the program (0755)
#   PREFIX/share/man/man1/pkcscca.1                   the man page (0644)
#   PREFIX/share/bash-completion/completions/pkcscca  bash completion (0644)
#
# The program is built with `cargo build --release --locked -p pkcscca` unless
# --binary names one already built. Debian's default PATH for root has
# /usr/local/sbin before /usr/sbin, so `pkcscca` then runs this program, and
# openCryptoki's stays at /usr/sbin/pkcscca for scripts that name it in full.
#
# --divert makes /usr/sbin/pkcscca run this program too (root; needs dpkg):
#   dpkg-divert --local --rename --divert /usr/sbin/pkcscca.opencryptoki --add /usr/sbin/pkcscca
#   ln -s PREFIX/sbin/pkcscca /usr/sbin/pkcscca
# openCryptoki's program stays usable as /usr/sbin/pkcscca.opencryptoki, and
# package upgrades of opencryptoki put it there too.
#
# --uninstall removes the three files and, if this script's --divert is in
# place, the link and the diversion (openCryptoki's program is renamed back).
# By hand that is:
#   rm /usr/sbin/pkcscca
#   dpkg-divert --local --rename --remove /usr/sbin/pkcscca
#
# Environment: CARGO (default cargo), CARGO_TARGET_DIR (default ./target).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=/usr/local
binary=
divert=0
uninstall=0
sbin=/usr/sbin

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}
die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}
say() { printf '%s\n' "$*"; }

while (($#)); do
    case $1 in
    --prefix) (($# > 1)) || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --binary) (($# > 1)) || die "--binary needs a file"; binary=$2; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --divert) divert=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

[[ -n $prefix ]] || die "empty --prefix"
[[ $prefix == /* ]] || prefix=$PWD/$prefix
prefix=${prefix%/}
[[ -n $prefix ]] || die "--prefix / is not supported"

bin_dst=$prefix/sbin/pkcscca
man_dst=$prefix/share/man/man1/pkcscca.1
comp_dst=$prefix/share/bash-completion/completions/pkcscca
diverted=$sbin/pkcscca.opencryptoki

# Who diverts $sbin/pkcscca: "LOCAL", a package name, or nothing.
diverter() {
    command -v dpkg-divert >/dev/null || return 0
    dpkg-divert --listpackage "$sbin/pkcscca"
}

# Whether $sbin/pkcscca is this script's link to $bin_dst.
our_link() {
    [[ -L $sbin/pkcscca && $(readlink "$sbin/pkcscca") == "$bin_dst" ]]
}

undivert() {
    if our_link; then
        rm -f -- "$sbin/pkcscca"
        say "removed $sbin/pkcscca (link to $bin_dst)"
    fi
    if [[ $(diverter) == LOCAL && ! -e $sbin/pkcscca && $(dpkg-divert --truename "$sbin/pkcscca") == "$diverted" ]]; then
        dpkg-divert --local --rename --divert "$diverted" --remove "$sbin/pkcscca"
    fi
}

if ((uninstall)); then
    undivert
    for f in "$bin_dst" "$man_dst" "$comp_dst"; do
        if [[ -e $f || -L $f ]]; then
            rm -f -- "$f"
            say "removed $f"
        fi
    done
    # Directories only this program's completion may have created.
    rmdir -- "$prefix/share/bash-completion/completions" 2>/dev/null || true
    rmdir -- "$prefix/share/bash-completion" 2>/dev/null || true
    exit 0
fi

if ((divert)); then
    command -v dpkg-divert >/dev/null || die "--divert needs dpkg-divert (Debian and derivatives)"
    [[ $bin_dst != "$sbin/pkcscca" ]] || die "--divert with --prefix /usr would replace the program by itself"
    case $(diverter) in
    '' | LOCAL) ;;
    *) die "$sbin/pkcscca is already diverted by package '$(diverter)'; remove that package first (dpkg -r $(diverter))" ;;
    esac
    if [[ $(diverter) == LOCAL ]] && ! our_link; then
        [[ $(dpkg-divert --truename "$sbin/pkcscca") == "$diverted" ]] \
            || die "$sbin/pkcscca has another local diversion; see dpkg-divert --list '*pkcscca*'"
        [[ ! -e $sbin/pkcscca && ! -L $sbin/pkcscca ]] \
            || die "$sbin/pkcscca is diverted but something else is in its place"
    fi
fi

if [[ -z $binary ]]; then
    cargo=${CARGO:-cargo}
    say "building: $cargo build --release --locked -p pkcscca"
    (cd "$root" && "$cargo" build --release --locked -p pkcscca)
    binary=${CARGO_TARGET_DIR:-$root/target}/release/pkcscca
    [[ $binary == /* ]] || binary=$root/$binary
fi
[[ -f $binary && -x $binary ]] || die "no executable program at $binary"

install -D -m 0755 -- "$binary" "$bin_dst"
install -D -m 0644 -- "$root/man/pkcscca.1" "$man_dst"
install -D -m 0644 -- "$root/completions/pkcscca.bash" "$comp_dst"
say "installed $bin_dst"
say "installed $man_dst"
say "installed $comp_dst"

if ((divert)); then
    if ! our_link; then
        dpkg-divert --local --rename --divert "$diverted" --add "$sbin/pkcscca"
        ln -s -- "$bin_dst" "$sbin/pkcscca"
    fi
    say "$sbin/pkcscca -> $bin_dst (openCryptoki's program, if installed: $diverted)"
fi
