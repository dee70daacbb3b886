//! Reading the SO and USER PINs.
//!
//! Mirrors `usr/lib/common/pin_prompt.c: pin_prompt()` (openCryptoki 3.27): print the
//! prompt and flush, turn terminal echo off when standard input is a terminal, read one
//! line, turn echo back on, then always print a newline (also when the input is a pipe,
//! which is why piped runs show `Enter the SO PIN: ` followed by a line break). The PIN is
//! the line up to its first CR or LF; like upstream's `strlen`, it also ends at a NUL.
//! A final line without a newline is accepted; end of input before any byte is an error.
//!
//! Differences from upstream: a line longer than [`MAX_PIN_LINE`] bytes is refused
//! instead of being read without bound (the CCA token's own limit is 128 bytes), and the
//! terminal is restored by a guard on every return path, including errors and panics.
//! A signal that kills the process while echo is off still leaves echo off, as upstream.
//!
//! The PIN is kept in a [`SecretPin`]: a zeroizing buffer, sized before reading so it is
//! never reallocated (a reallocation would leave a copy behind), with no `Debug`.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::BorrowedFd;

use rustix::termios::{self, LocalModes, OptionalActions, Termios};
use zeroize::Zeroizing;

use crate::messages;

/// Longest PIN line we read, newline excluded.
pub const MAX_PIN_LINE: usize = 4096;

/// Which PIN is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    /// The Security Officer PIN.
    So,
    /// The normal user PIN.
    User,
}

impl PinKind {
    /// `SO` or `USER`, as in upstream's prompts and messages.
    pub fn name(self) -> &'static str {
        match self {
            PinKind::So => "SO",
            PinKind::User => "USER",
        }
    }
}

/// A PIN read from the user. Zeroized on drop; deliberately not `Debug` or `Display`.
pub struct SecretPin(Zeroizing<Vec<u8>>);

impl SecretPin {
    /// Wraps PIN bytes (for callers that obtain a PIN elsewhere, e.g. tests).
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        SecretPin(bytes)
    }

    /// The PIN bytes, without line ending.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Why no PIN could be read. Never contains PIN bytes.
#[derive(Debug)]
pub enum PinError {
    /// End of input before any byte.
    Eof,
    /// The line exceeds [`MAX_PIN_LINE`] bytes.
    TooLong,
    /// Reading stdin or writing the prompt failed.
    Io(io::Error),
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinError::Eof => f.write_str("end of input"),
            PinError::TooLong => write!(f, "PIN line longer than {MAX_PIN_LINE} bytes"),
            PinError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PinError {}

/// Terminal echo switched off for as long as this lives.
struct EchoOff<'fd> {
    fd: BorrowedFd<'fd>,
    saved: Termios,
}

impl<'fd> EchoOff<'fd> {
    /// Turns echo off on `fd`; `None` (echo left alone) when `fd` is not a terminal or
    /// the change is refused, as upstream's `echo()` silently does.
    fn new(fd: BorrowedFd<'fd>) -> Option<Self> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // TCSAFLUSH like upstream: type-ahead entered before the prompt is discarded.
        termios::tcsetattr(fd, OptionalActions::Flush, &quiet).ok()?;
        Some(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        // Nothing sensible to do if restoring fails; upstream ignores it too.
        let _ = termios::tcsetattr(self.fd, OptionalActions::Flush, &self.saved);
    }
}

/// Prompts for one PIN on `prompt_to` and reads it from `input`.
///
/// `terminal` is the descriptor of standard input when it is a terminal (echo is turned
/// off on it while reading); pass `None` for pipes, files and in-process tests.
pub fn read_pin(
    kind: PinKind,
    input: &mut dyn BufRead,
    prompt_to: &mut dyn Write,
    terminal: Option<BorrowedFd<'_>>,
) -> Result<SecretPin, PinError> {
    messages::write_pin_prompt(prompt_to, kind).map_err(PinError::Io)?;

    let mut line = Zeroizing::new(Vec::with_capacity(MAX_PIN_LINE + 1));
    let read = {
        let _echo = terminal.and_then(EchoOff::new);
        let limit = u64::try_from(MAX_PIN_LINE + 1).unwrap_or(u64::MAX);
        input.take(limit).read_until(b'\n', &mut line)
    };
    // Upstream prints the line break whatever happened.
    messages::write_after_pin(prompt_to).map_err(PinError::Io)?;

    match read {
        Err(e) => return Err(PinError::Io(e)),
        Ok(0) => return Err(PinError::Eof),
        Ok(_) => {}
    }
    let end = line.iter().position(|b| matches!(b, b'\r' | b'\n' | 0));
    match end {
        Some(end) => line.truncate(end),
        None if line.len() > MAX_PIN_LINE => return Err(PinError::TooLong),
        None => {}
    }
    Ok(SecretPin(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(kind: PinKind, input: &[u8]) -> (Result<Vec<u8>, String>, String) {
        let mut input = input;
        let mut prompt = Vec::new();
        let r = read_pin(kind, &mut input, &mut prompt, None)
            .map(|p| p.as_bytes().to_vec())
            .map_err(|e| e.to_string());
        (r, String::from_utf8(prompt).unwrap())
    }

    #[test]
    fn prompt_then_newline_even_from_a_pipe() {
        let (pin, shown) = read(PinKind::So, b"76543210\n");
        assert_eq!(pin.unwrap(), b"76543210");
        assert_eq!(shown, "Enter the SO PIN: \n");
        let (_, shown) = read(PinKind::User, b"x\n");
        assert_eq!(shown, "Enter the USER PIN: \n");
    }

    #[test]
    fn eof_is_an_error_but_still_ends_the_prompt_line() {
        let (pin, shown) = read(PinKind::So, b"");
        assert_eq!(pin.unwrap_err(), "end of input");
        assert_eq!(shown, "Enter the SO PIN: \n");
    }

    #[test]
    fn pin_ends_at_first_cr_lf_or_nul_and_last_line_may_lack_newline() {
        assert_eq!(read(PinKind::So, b"12345678\r\n").0.unwrap(), b"12345678");
        assert_eq!(read(PinKind::So, b"1234\x005678\n").0.unwrap(), b"1234");
        assert_eq!(read(PinKind::So, b"12345678").0.unwrap(), b"12345678");
        assert_eq!(read(PinKind::So, b"\n").0.unwrap(), b"");
    }

    #[test]
    fn both_pins_come_from_one_buffered_stream() {
        let mut input: &[u8] = b"76543210\n11223344\n";
        let mut prompt = Vec::new();
        let so = read_pin(PinKind::So, &mut input, &mut prompt, None).unwrap();
        let user = read_pin(PinKind::User, &mut input, &mut prompt, None).unwrap();
        assert_eq!(
            (so.as_bytes(), user.as_bytes()),
            (&b"76543210"[..], &b"11223344"[..])
        );
        assert_eq!(prompt, b"Enter the SO PIN: \nEnter the USER PIN: \n");
    }

    #[test]
    fn overlong_line_is_refused() {
        let long = vec![b'7'; MAX_PIN_LINE + 1];
        assert!(read(PinKind::So, &long).0.is_err());
        let mut ok = vec![b'7'; MAX_PIN_LINE];
        ok.push(b'\n');
        assert_eq!(read(PinKind::So, &ok).0.unwrap().len(), MAX_PIN_LINE);
    }

    #[test]
    fn a_non_terminal_descriptor_leaves_echo_alone() {
        let file = tempfile::tempfile().unwrap();
        use std::os::fd::AsFd;
        assert!(EchoOff::new(file.as_fd()).is_none());
    }
}
