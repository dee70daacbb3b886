//! The `pkcscca` binary: hand the process streams to [`pkcscca::app`] and exit with its
//! status.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::process::ExitCode;

use pkcscca::app::{self, Io, NotYetAvailable, Settings};

fn main() -> ExitCode {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal().then(|| stdin.as_fd());
    let io = Io {
        stdin: &mut stdin.lock(),
        stdout: &mut std::io::stdout().lock(),
        stderr: &mut std::io::stderr().lock(),
        terminal,
    };
    app::run_with(
        std::env::args_os(),
        io,
        Settings::from_env(),
        &mut NotYetAvailable,
    )
    .into()
}
