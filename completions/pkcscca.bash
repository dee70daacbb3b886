# bash completion for pkcscca (pkcscca-rs)                   -*- shell-script -*-
#
# Installed as share/bash-completion/completions/pkcscca, where bash-completion
# loads it on first use; or source it from ~/.bashrc.
#
# Completes the options, the words of -m, -k and -v, directories after -d and
# --from, and after -s the slots of opencryptoki.conf that can hold a CCA token
# (the file pkcscca itself reads: $PKCSCCA_OPENCRYPTOKI_CONF, default
# /etc/opencryptoki/opencryptoki.conf). It needs nothing but bash itself.

# The slot numbers of opencryptoki.conf, in decimal, one per line, except
# slots whose STDLL is another known token's (pkcscca refuses those) and
# stanzas without an stdll (openCryptoki ignores them). Both grammars are read:
# openCryptoki 3.8.1's and the current one (`{` on the next line, hex numbers,
# quoted values, comments from `#`).
_pkcscca_slots() {
    local conf=${PKCSCCA_OPENCRYPTOKI_CONF:-/etc/opencryptoki/opencryptoki.conf}
    [[ -r $conf && -f $conf ]] || return 0
    local -a words=()
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%%#*}
        line=${line//\{/ \{ }
        line=${line//\}/ \} }
        line=${line//=/ = }
        line=${line//\"/}
        # Split on blanks only; no pathname expansion of the words.
        local -a split=()
        read -r -a split <<<"$line"
        words+=("${split[@]}")
    done <"$conf"

    local i=0 n=${#words[@]} depth=0 slot='' stdll='' w
    while ((i < n)); do
        w=${words[i]}
        if ((depth == 0)) && [[ $w == slot ]] && ((i + 1 < n)); then
            slot=${words[i + 1]}
            stdll=''
            i=$((i + 2))
            continue
        fi
        case $w in
        \{) depth=$((depth + 1)) ;;
        \})
            depth=$((depth - 1))
            if ((depth == 0)) && [[ -n $slot ]]; then
                _pkcscca_emit_slot "$slot" "$stdll"
                slot=''
            fi
            ;;
        stdll)
            if ((depth == 1)) && ((i + 2 < n)) && [[ ${words[i + 1]} == = ]]; then
                stdll=${words[i + 2]}
                i=$((i + 3))
                continue
            fi
            ;;
        esac
        i=$((i + 1))
    done
}

# Prints SLOT (decimal or 0x hex) in decimal when its STDLL may be the CCA token's.
_pkcscca_emit_slot() {
    local slot=$1 stdll=${2##*/}
    [[ -n $stdll ]] || return 0
    case $stdll in
    libpkcs11_ep11.so* | libpkcs11_ica.so* | libpkcs11_sw.so* | libpkcs11_tpm.so* | libpkcs11_icsf.so*)
        return 0
        ;;
    esac
    if [[ $slot =~ ^0[xX][0-9a-fA-F]{1,8}$ ]]; then
        printf '%d\n' "$slot"
    elif [[ $slot =~ ^[0-9]{1,9}$ ]]; then
        printf '%d\n' "$((10#$slot))"
    fi
}

_pkcscca() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local prev=''
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}

    # "--opt=value": bash splits it at "=" (COMP_WORDBREAKS) into
    # "--opt" "=" "value"; without that split the word holds all of it.
    if [[ $prev == = ]] && ((COMP_CWORD > 1)); then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    elif [[ $cur == --*=* ]]; then
        prev=${cur%%=*}
        cur=${cur#*=}
    fi

    local opts_short='-h -m -k -s -d -v'
    local opts_long='--help --version --slotid= --datastore= --verbose --dry-run --json --no-backup --from= --threads='

    COMPREPLY=()
    case $prev in
    -m)
        mapfile -t COMPREPLY < <(compgen -W 'v2objectsv3 keys oldrsakeys status restore' -- "$cur")
        return 0
        ;;
    -k)
        mapfile -t COMPREPLY < <(compgen -W 'aes apka asym sym all' -- "$cur")
        return 0
        ;;
    -s | --s | --sl*)
        mapfile -t COMPREPLY < <(compgen -W "$(_pkcscca_slots)" -- "$cur")
        return 0
        ;;
    -d | --d | --da* | --f | --fr*)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        return 0
        ;;
    --threads | --t*)
        local cpus
        cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null) || cpus=1
        [[ $cpus =~ ^[0-9]+$ ]] || cpus=1
        mapfile -t COMPREPLY < <(compgen -W "$(seq 1 "$cpus")" -- "$cur")
        return 0
        ;;
    -v | --v | --ve | --ver | --verb*)
        # Abbreviations of --verbose win over --version, as in pkcscca. The level
        # is optional: a word starting with "-" is the next option.
        if [[ $cur != -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W 'none error warn info devel debug' -- "$cur")
            return 0
        fi
        ;;
    esac

    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$opts_short $opts_long" -- "$cur")
        # Options that take "=value" get no trailing space.
        if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]]; then
            compopt -o nospace 2>/dev/null
        fi
    fi
    return 0
}

complete -F _pkcscca pkcscca
