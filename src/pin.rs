//! Reading the SO and USER PINs.
//!
//! Mirrors `usr/lib/common/pin_prompt.c: pin_prompt()` (openCryptoki 3.27): print the
//! prompt and flush, turn terminal echo off when standard input is a terminal, read one
//! line, turn echo back on, then always print a newline. This module only reads: the
//! prompt and the newline are printed by the caller (`Output::pin_prompt` and
//! `Output::pin_prompt_end` in `messages`). Upstream prints that newline also when the
//! input is a pipe, which is why piped runs show `Enter the SO PIN: ` followed by a
//! line break. The PIN is
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
use std::io::{self, Read};
use std::os::fd::BorrowedFd;

use rustix::termios::{self, LocalModes, OptionalActions, Termios};
use zeroize::Zeroizing;

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

/// Standard input read straight from its descriptor, one byte per `read(2)`: no
/// buffer of ours or of std's holds the PIN, and the bytes after the first line (the
/// USER PIN) stay in the kernel until they are asked for.
pub struct RawInput<'fd>(BorrowedFd<'fd>);

impl<'fd> RawInput<'fd> {
    /// Reads from `fd` (standard input in the binary).
    pub fn new(fd: BorrowedFd<'fd>) -> Self {
        RawInput(fd)
    }
}

impl Read for RawInput<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        rustix::io::read(self.0, buf).map_err(io::Error::from)
    }
}

/// Reads one PIN line from `input` (the caller has printed the prompt).
///
/// `terminal` is the descriptor of standard input when it is a terminal (echo is turned
/// off on it while reading); pass `None` for pipes, files and in-process tests. Bytes
/// are taken one at a time, so nothing past the line's end is consumed, and they go
/// straight into the zeroizing buffer, sized once so it never reallocates.
pub fn read_pin(
    input: &mut dyn Read,
    terminal: Option<BorrowedFd<'_>>,
) -> Result<SecretPin, PinError> {
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_PIN_LINE + 1));
    let read = {
        let _echo = terminal.and_then(EchoOff::new);
        read_line(input, &mut line)
    };
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

/// Appends bytes of `input` to `line` up to and including the first `\n`, at most
/// `line`'s capacity; returns how many were read.
fn read_line(input: &mut dyn Read, line: &mut Vec<u8>) -> io::Result<usize> {
    let mut byte = Zeroizing::new([0u8; 1]);
    while line.len() < line.capacity() {
        match input.read(&mut byte[..]) {
            Ok(0) => break,
            Ok(_) => {
                let [b] = *byte;
                line.push(b);
                if b == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(line.len())
}

/// The two PINs, read after all arguments were accepted and the store prepared.
pub struct Pins {
    /// Security Officer PIN.
    pub so: SecretPin,
    /// User PIN.
    pub user: SecretPin,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8]) -> Result<Vec<u8>, String> {
        let mut input = input;
        read_pin(&mut input, None)
            .map(|p| p.as_bytes().to_vec())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn eof_before_any_byte_is_an_error() {
        assert_eq!(read(b"").unwrap_err(), "end of input");
    }

    #[test]
    fn pin_ends_at_first_cr_lf_or_nul_and_last_line_may_lack_newline() {
        assert_eq!(read(b"12345678\r\n").unwrap(), b"12345678");
        assert_eq!(read(b"1234\x005678\n").unwrap(), b"1234");
        assert_eq!(read(b"12345678").unwrap(), b"12345678");
        assert_eq!(read(b"\n").unwrap(), b"");
    }

    #[test]
    fn a_pin_read_consumes_its_line_and_nothing_more() {
        let mut input: &[u8] = b"76543210\n11223344\nrest";
        let so = read_pin(&mut input, None).unwrap();
        assert_eq!(input, b"11223344\nrest");
        let user = read_pin(&mut input, None).unwrap();
        assert_eq!(
            (so.as_bytes(), user.as_bytes()),
            (&b"76543210"[..], &b"11223344"[..])
        );
        assert_eq!(input, b"rest");
    }

    #[test]
    fn overlong_line_is_refused() {
        let long = vec![b'7'; MAX_PIN_LINE + 1];
        assert!(read(&long).is_err());
        let mut ok = vec![b'7'; MAX_PIN_LINE];
        ok.push(b'\n');
        assert_eq!(read(&ok).unwrap().len(), MAX_PIN_LINE);
    }

    #[test]
    fn raw_input_reads_the_descriptor_unbuffered() {
        use std::io::{Seek, Write};
        use std::os::fd::AsFd;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"so-pin\nuser-pin\n").unwrap();
        file.rewind().unwrap();
        let so = read_pin(&mut RawInput::new(file.as_fd()), None).unwrap();
        assert_eq!(so.as_bytes(), b"so-pin");
        // The descriptor's offset is just past the first line: nothing was read ahead.
        assert_eq!(file.stream_position().unwrap(), 7);
        let user = read_pin(&mut RawInput::new(file.as_fd()), None).unwrap();
        assert_eq!(user.as_bytes(), b"user-pin");
    }

    #[test]
    fn a_non_terminal_descriptor_leaves_echo_alone() {
        let file = tempfile::tempfile().unwrap();
        use std::os::fd::AsFd;
        assert!(EchoOff::new(file.as_fd()).is_none());
    }
}
