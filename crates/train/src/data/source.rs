//! Reading a dataset file without holding it whole: a first pass checks that it is UTF-8 and
//! finds its first character, then the formats that go record by record (JSONL, CSV, plain
//! text in paragraphs) read it as a stream. Only a JSON array, a single pretty-printed object
//! and a plain-text file taken as one document are read whole.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::path::Path;

use super::issue::{DataError, Result};

/// Bytes read at a time.
const READ_BYTES: usize = 1 << 16;

/// What the first pass over a file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Only whitespace, or nothing.
    Blank,
    /// UTF-8 throughout; the first character that is not whitespace.
    Text { first: char },
    /// The 1-based line of the first byte that is not UTF-8.
    NotUtf8 { line: usize },
}

pub(crate) fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| DataError::io(path, e))
}

/// Reads `path` once, a block at a time.
pub(crate) fn probe(path: &Path) -> Result<Probe> {
    probe_reader(open(path)?).map_err(|e| DataError::io(path, e))
}

fn probe_reader(mut reader: impl Read) -> std::io::Result<Probe> {
    let mut buf = vec![0u8; READ_BYTES];
    // Bytes of a character cut by the end of the last block, moved to the front.
    let mut carried = 0usize;
    let mut lines_before = 0usize;
    let mut first = None;
    loop {
        let read = match reader.read(&mut buf[carried..]) {
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if read == 0 {
            if carried > 0 {
                // The file ends inside a character.
                return Ok(Probe::NotUtf8 {
                    line: lines_before + 1,
                });
            }
            break;
        }
        let filled = carried + read;
        let (valid, broken) = match std::str::from_utf8(&buf[..filled]) {
            Ok(text) => (text, false),
            Err(err) => {
                let text = std::str::from_utf8(&buf[..err.valid_up_to()])
                    .expect("the prefix up to valid_up_to is UTF-8");
                // `error_len` is None when the block merely ends inside a character.
                (text, err.error_len().is_some())
            }
        };
        if first.is_none() {
            first = valid.chars().find(|c| !c.is_whitespace());
        }
        lines_before += valid.bytes().filter(|b| *b == b'\n').count();
        if broken {
            return Ok(Probe::NotUtf8 {
                line: lines_before + 1,
            });
        }
        let used = valid.len();
        buf.copy_within(used..filled, 0);
        carried = filled - used;
    }
    Ok(match first {
        Some(first) => Probe::Text { first },
        None => Probe::Blank,
    })
}

/// The whole file as text (for the formats that cannot be read record by record).
pub(crate) fn read_whole(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))
}

/// The file's lines, numbered from 1, without their `\n` or `\r\n`.
pub(crate) fn lines(path: &Path) -> Result<impl Iterator<Item = Result<(usize, String)>> + '_> {
    let reader = BufReader::with_capacity(READ_BYTES, open(path)?);
    Ok(reader.lines().enumerate().map(move |(index, line)| {
        line.map(|text| (index + 1, text))
            .map_err(|e| DataError::io(path, e))
    }))
}

/// A buffered reader over the file.
pub(crate) fn reader(path: &Path) -> Result<BufReader<File>> {
    Ok(BufReader::with_capacity(READ_BYTES, open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out at most `step` bytes per read, so characters straddle reads.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn probe_bytes(bytes: &[u8]) -> Probe {
        for step in [1, 2, 3, 5, READ_BYTES] {
            let whole = probe_reader(bytes).unwrap();
            assert_eq!(
                probe_reader(Trickle { bytes, step }).unwrap(),
                whole,
                "step {step}"
            );
        }
        probe_reader(bytes).unwrap()
    }

    #[test]
    fn finds_the_first_character_and_the_line_of_a_bad_byte() {
        assert_eq!(probe_bytes(b""), Probe::Blank);
        assert_eq!(probe_bytes(b" \n\t\r\n"), Probe::Blank);
        assert_eq!(
            probe_bytes("\n  \u{00e9}t\u{00e9}\n[".as_bytes()),
            Probe::Text { first: '\u{00e9}' }
        );
        assert_eq!(
            probe_bytes(b"{\"a\": 1}\n{\"a\": \"caf\xe9\"}\n"),
            Probe::NotUtf8 { line: 2 }
        );
        // A file cut inside a two-byte character.
        assert_eq!(probe_bytes(b"ok\n\nx\xc3"), Probe::NotUtf8 { line: 3 });
        // Multi-byte characters across every block boundary stay valid.
        let text = "\u{4e2d}\u{6587}\n\u{1f600} ".repeat(40_000);
        assert_eq!(
            probe_bytes(text.as_bytes()),
            Probe::Text { first: '\u{4e2d}' }
        );
    }
}
