//! The fleet playbook (`examples/ansible/site.yml`) run by ansible-core
//! against four local hosts (`ansible_connection=local`), each with its own
//! CCA token store and its own emulated card, PINs in Ansible Vault files.
//! Host h3 has a wrong user PIN: with serial 1 and max_fail_percentage 0 the
//! run stops there, h4 is not touched, and the report names h3.
//!
//! Needs `ansible-playbook` and `ansible-vault` (ansible-core from PyPI):
//! from `PKCSCCA_ANSIBLE_BIN` (their directory), else from PATH. .ci/run
//! installs them into a virtual environment and runs this test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::emu;
use common::lab::{self, Lab, SEED};

const HOSTS: [&str; 4] = ["h1", "h2", "h3", "h4"];
const FAILING: &str = "h3";
const WRONG_USER_PIN: &str = "99887766";

fn tool(name: &str) -> PathBuf {
    match std::env::var_os("PKCSCCA_ANSIBLE_BIN") {
        Some(dir) => Path::new(&dir).join(name),
        None => PathBuf::from(name),
    }
}

/// One managed "host": a lab (store, card, lock directory) after an AES
/// master key change, so its AES keys wait under the OLD master key.
struct Host {
    name: &'static str,
    lab: Lab,
}

impl Host {
    fn new(name: &'static str) -> Host {
        let lab = Lab::new(&["--format", "new"]);
        lab.change_mk("aes", 0x11);
        Host { name, lab }
    }

    /// Every object file, to prove a host was not written.
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.lab.objects()
    }

    /// Whether every AES key is under the card's CURRENT master key and works.
    fn aes_current(&self) -> bool {
        self.lab.check(Some("aes")).code == 0
    }

    fn inventory_entry(&self) -> String {
        let env = |k: &str, v: &Path| format!("          {k}: \"{}\"\n", v.display());
        format!(
            "    {name}:\n      pkcscca_datastore: \"{store}\"\n      pkcscca_environment:\n{ld}{state}          CSULCCA_EMU_SEED: \"{SEED}\"\n{lock}{conf}",
            name = self.name,
            store = self.lab.store.display(),
            ld = env("LD_LIBRARY_PATH", emu::emulator_dir()),
            state = env("CSULCCA_EMU_STATE", &self.lab.state),
            lock = env("PKCSCCA_LOCK_DIR", &self.lab.lock_dir),
            conf = env(
                "PKCSCCA_OPENCRYPTOKI_CONF",
                &self.lab.root().join("no-opencryptoki.conf")
            ),
        )
    }
}

/// The controller side: inventory with vault-encrypted PINs, the vault
/// password file, the report file.
struct Controller {
    dir: tempfile::TempDir,
}

impl Controller {
    fn new(hosts: &[Host]) -> Controller {
        let dir = tempfile::tempdir().unwrap();
        let c = Controller { dir };
        let inv = c.inventory();
        fs::create_dir_all(inv.join("group_vars/cca_hosts")).unwrap();
        fs::create_dir_all(inv.join(format!("host_vars/{FAILING}"))).unwrap();
        let mut hosts_yml = String::from("all:\n  children:\n    cca_hosts:\n      hosts:\n");
        for h in hosts {
            // Indent the host entries under `hosts:`.
            for line in h.inventory_entry().lines() {
                hosts_yml.push_str("    ");
                hosts_yml.push_str(line);
                hosts_yml.push('\n');
            }
        }
        fs::write(inv.join("hosts.yml"), hosts_yml).unwrap();
        fs::write(
            inv.join("group_vars/cca_hosts/main.yml"),
            format!(
                "ansible_connection: local\n\
                 ansible_python_interpreter: \"{{{{ ansible_playbook_python }}}}\"\n\
                 pkcscca_binary: \"{bin}\"\n\
                 pkcscca_slot: 2\n\
                 pkcscca_mk_type: aes\n\
                 pkcscca_app_services: []\n\
                 pkcscca_slotd_services: []\n\
                 pkcscca_serial: 1\n\
                 pkcscca_max_fail_percentage: 0\n\
                 pkcscca_report_file: \"{report}\"\n",
                bin = lab::pkcscca_bin().display(),
                report = c.report_file().display(),
            ),
        )
        .unwrap();
        fs::write(c.dir.path().join("vault-pass"), "test vault password\n").unwrap();
        c.write_vault(
            &inv.join("group_vars/cca_hosts/vault.yml"),
            &format!(
                "vault_pkcscca_so_pin: \"{}\"\nvault_pkcscca_user_pin: \"{}\"\n",
                lab::SO_PIN,
                lab::USER_PIN
            ),
        );
        c.set_failing_user_pin(WRONG_USER_PIN);
        c
    }

    fn inventory(&self) -> PathBuf {
        self.dir.path().join("inventory")
    }

    fn report_file(&self) -> PathBuf {
        self.dir.path().join("report.json")
    }

    /// Writes `text` to `path` and encrypts it with ansible-vault.
    fn write_vault(&self, path: &Path, text: &str) {
        fs::write(path, text).unwrap();
        let out = Command::new(tool("ansible-vault"))
            .arg("encrypt")
            .arg("--vault-password-file")
            .arg(self.dir.path().join("vault-pass"))
            .arg(path)
            .env("ANSIBLE_LOCAL_TEMP", self.dir.path().join("ansible-tmp"))
            .output()
            .expect("run ansible-vault (install ansible-core, or set PKCSCCA_ANSIBLE_BIN)");
        assert!(out.status.success(), "ansible-vault: {out:?}");
        let enc = fs::read_to_string(path).unwrap();
        assert!(enc.starts_with("$ANSIBLE_VAULT;"), "{enc}");
    }

    /// The group's PINs.
    fn set_group_pins(&self, so: &str, user: &str) {
        self.write_vault(
            &self.inventory().join("group_vars/cca_hosts/vault.yml"),
            &format!("vault_pkcscca_so_pin: \"{so}\"\nvault_pkcscca_user_pin: \"{user}\"\n"),
        );
    }

    /// h3's user PIN, overriding the group's (host_vars beat group_vars).
    fn set_failing_user_pin(&self, pin: &str) {
        self.write_vault(
            &self
                .inventory()
                .join(format!("host_vars/{FAILING}/vault.yml")),
            &format!("vault_pkcscca_user_pin: \"{pin}\"\n"),
        );
    }

    /// Runs the playbook; returns (exit status, stdout + stderr).
    fn play(&self, extra: &[&str]) -> (i32, String) {
        let _ = fs::remove_file(self.report_file());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let home = self.dir.path().join("home");
        fs::create_dir_all(&home).unwrap();
        let out = Command::new(tool("ansible-playbook"))
            .arg("-i")
            .arg(self.inventory())
            .arg("--vault-password-file")
            .arg(self.dir.path().join("vault-pass"))
            .arg(root.join("examples/ansible/site.yml"))
            .args(extra)
            .env("HOME", &home)
            .env("ANSIBLE_LOCAL_TEMP", self.dir.path().join("ansible-tmp"))
            .env(
                "ANSIBLE_REMOTE_TEMP",
                self.dir.path().join("ansible-remote-tmp"),
            )
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("ANSIBLE_STDOUT_CALLBACK", "default")
            .env_remove("ANSIBLE_CONFIG")
            .env_remove("CSULCCA_EMU_FAIL")
            .env_remove("CSULCCA_EMU_LATENCY_US")
            .current_dir(self.dir.path())
            .output()
            .expect("run ansible-playbook (install ansible-core, or set PKCSCCA_ANSIBLE_BIN)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Shown with --nocapture (and by .ci/run).
        eprintln!("=== ansible-playbook {extra:?}\n{text}");
        (out.status.code().unwrap_or(-1), text)
    }

    /// The report file written by the run whose output was `out`.
    fn report(&self, out: &str) -> serde_json::Value {
        let text = fs::read_to_string(self.report_file())
            .unwrap_or_else(|e| panic!("report file: {e}; ansible said:\n{out}"));
        serde_json::from_str(&text).unwrap()
    }
}

/// The report's entry for `host` (null when it did not run).
fn entry<'a>(report: &'a serde_json::Value, host: &str) -> &'a serde_json::Value {
    let hosts = report["hosts"].as_array().expect("hosts");
    let i = HOSTS.iter().position(|h| *h == host).unwrap();
    &hosts[i]
}

/// The report's printed line for `host`.
fn report_line<'a>(out: &'a str, host: &str) -> &'a str {
    let prefix = format!("\"{host}: ");
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no report line for {host} in\n{out}"))
}

/// The PLAY RECAP counters of `host`.
fn recap(out: &str, host: &str) -> BTreeMap<String, u32> {
    let line = out
        .rsplit("PLAY RECAP")
        .next()
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("{host} ")))
        .unwrap_or_else(|| panic!("{host} not in the recap:\n{out}"));
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn assert_no_pins(out: &str) {
    for pin in [lab::SO_PIN, lab::USER_PIN, WRONG_USER_PIN] {
        assert!(
            !out.contains(pin),
            "a PIN ({pin}) appears in ansible's output:\n{out}"
        );
    }
}

#[test]
#[ignore = "needs ansible-core (.ci/run installs it and runs this test)"]
fn playbook_migrates_in_batches_and_stops_at_the_failing_host() {
    let _guard = lab::no_pkcsslotd_guard();
    let hosts: Vec<Host> = HOSTS.iter().map(|n| Host::new(n)).collect();
    let ctl = Controller::new(&hosts);
    let before: Vec<_> = hosts.iter().map(Host::snapshot).collect();
    for h in &hosts {
        assert!(!h.aes_current(), "{}: AES keys should be under OLD", h.name);
    }

    // 1. Check mode: pkcscca --dry-run everywhere up to h3; nothing written.
    let (rc, out) = ctl.play(&["--check"]);
    assert_eq!(rc, 2, "check mode should fail on {FAILING}:\n{out}");
    assert_no_pins(&out);
    for (h, snap) in hosts.iter().zip(&before) {
        assert_eq!(&h.snapshot(), snap, "{} written in check mode", h.name);
    }
    assert!(
        report_line(&out, "h1").starts_with("\"h1: dry run: "),
        "{out}"
    );
    assert!(
        report_line(&out, "h3").contains("FAILED (pkcscca exit status 8)"),
        "{out}"
    );
    assert!(report_line(&out, "h4").contains("not run"), "{out}");
    assert_eq!(recap(&out, "h1")["changed"], 1, "{out}");
    let report = ctl.report(&out);
    assert_eq!(report["stopped"], true);
    assert_eq!(entry(&report, "h2")["dry_run"], true);

    // 2. The migration, verbose: h1 and h2 migrated, h3 fails on its PIN and
    //    stops the run, h4 untouched.
    let (rc, out) = ctl.play(&["-vvv"]);
    assert_eq!(rc, 2, "{out}");
    assert_no_pins(&out);
    assert!(hosts[0].aes_current() && hosts[1].aes_current(), "{out}");
    assert_ne!(hosts[0].snapshot(), before[0]);
    assert_eq!(
        hosts[2].snapshot(),
        before[2],
        "the failing host was written"
    );
    assert_eq!(
        hosts[3].snapshot(),
        before[3],
        "a host after the failing one was touched"
    );
    assert!(!hosts[3].aes_current());

    let h3 = report_line(&out, FAILING);
    assert!(h3.contains("FAILED (pkcscca exit status 8)"), "{h3}");
    assert!(h3.contains("USER PIN is incorrect"), "{h3}");
    assert!(report_line(&out, "h1").contains("migrated: "), "{out}");
    assert!(
        report_line(&out, "h4").contains("not run: the run stopped before its batch"),
        "{out}"
    );
    assert!(
        out.contains("4 host(s): 2 migrated, 0 unchanged, 1 failed, 1 not run"),
        "{out}"
    );
    // One report, printed once.
    assert_eq!(out.matches("\"4 host(s): ").count(), 1, "{out}");
    assert_eq!(recap(&out, "h1")["changed"], 1);
    assert_eq!(recap(&out, FAILING)["failed"], 1);
    assert!(!out.contains("\nh4 "), "h4 ran:\n{out}");

    let report = ctl.report(&out);
    assert_eq!(report["stopped"], true);
    let h1 = entry(&report, "h1");
    assert_eq!(h1["failed"], false);
    assert_eq!(h1["rc"], 0);
    let written = h1["summary"]["objects_written"].as_u64().unwrap();
    assert!(written > 0, "{h1}");
    assert_eq!(entry(&report, FAILING)["rc"], 8);
    assert!(entry(&report, "h4").is_null());

    // 3. With h3's PIN corrected, the next run finishes the fleet: h1 and h2
    //    have nothing to do (not changed), h3 and h4 are migrated.
    ctl.set_failing_user_pin(lab::USER_PIN);
    let (rc, out) = ctl.play(&[]);
    assert_eq!(rc, 0, "{out}");
    assert_no_pins(&out);
    for h in &hosts {
        assert!(h.aes_current(), "{} not migrated:\n{out}", h.name);
    }
    assert_eq!(recap(&out, "h1")["changed"], 0, "{out}");
    assert_eq!(recap(&out, "h4")["changed"], 1, "{out}");
    assert!(report_line(&out, "h2").contains("nothing to do"), "{out}");
    let h4 = report_line(&out, "h4");
    assert!(
        h4.starts_with("\"h4: migrated: ") && h4.ends_with(" object file(s) rewritten\","),
        "{h4}"
    );
    assert!(
        out.contains("4 host(s): 2 migrated, 2 unchanged, 0 failed, 0 not run"),
        "{out}"
    );
    assert_eq!(ctl.report(&out)["stopped"], false);
}

#[test]
#[ignore = "needs ansible-core (.ci/run installs it and runs this test)"]
fn example_inventory_parses_and_keeps_the_pins_out_of_it() {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ansible");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(tool("ansible-playbook"))
        .args(["-i", "inventory", "site.yml", "--syntax-check"])
        .current_dir(&ex)
        .env("HOME", tmp.path())
        .env("ANSIBLE_LOCAL_TEMP", tmp.path().join("ansible-tmp"))
        .output()
        .expect("run ansible-playbook");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(tool("ansible-inventory"))
        .args(["-i", "inventory", "--host", "zguest03.example.com"])
        .current_dir(&ex)
        .env("HOME", tmp.path())
        .env("ANSIBLE_LOCAL_TEMP", tmp.path().join("ansible-tmp"))
        .output()
        .expect("run ansible-inventory");
    assert!(out.status.success(), "{out:?}");
    let vars: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(vars["pkcscca_slot"], 3);
    assert_eq!(vars["pkcscca_serial"], 1);
    assert_eq!(vars["pkcscca_max_fail_percentage"], 0);
    // Placeholders only, which the playbook refuses.
    assert_eq!(vars["vault_pkcscca_so_pin"], "CHANGE-ME");
    assert_eq!(vars["vault_pkcscca_user_pin"], "CHANGE-ME");
}

#[test]
#[ignore = "needs ansible-core (.ci/run installs it and runs this test)"]
fn placeholder_pins_are_refused_before_pkcscca_runs() {
    let _guard = lab::no_pkcsslotd_guard();
    let hosts = vec![Host::new("h1")];
    let ctl = Controller::new(&hosts);
    ctl.set_group_pins("CHANGE-ME", "CHANGE-ME");
    let before = hosts[0].snapshot();
    let (rc, out) = ctl.play(&[]);
    assert_eq!(rc, 2, "{out}");
    assert_eq!(
        report_line(&out, "h1"),
        "\"h1: FAILED: Check that the PINs are set (Ansible Vault)\",",
        "{out}"
    );
    assert!(
        out.contains("1 host(s): 0 migrated, 0 unchanged, 1 failed, 0 not run"),
        "{out}"
    );
    assert_eq!(ctl.report(&out)["hosts"][0]["rc"], serde_json::Value::Null);
    assert_eq!(hosts[0].snapshot(), before);
}
