//! The `pkcscca` binary: hand the process streams to [`pkcscca::app`] and exit with its
//! status.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::process::ExitCode;

use pkcscca::app::{self, Io, Migrator, RawInput, Settings};

fn main() -> ExitCode {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal().then(|| stdin.as_fd());
    let io = Io {
        // Unbuffered: std's stdin buffer would keep both PIN lines after the run.
        stdin: &mut RawInput::new(stdin.as_fd()),
        stdout: &mut std::io::stdout().lock(),
        stderr: &mut std::io::stderr().lock(),
        terminal,
    };
    app::run_with(
        std::env::args_os(),
        io,
        Settings::from_env(),
        &Migrator::from_env(),
    )
    .into()
}
