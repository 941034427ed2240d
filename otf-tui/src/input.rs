//! Terminal input bytes to key events, for a terminal that is not this
//! process's own (an SSH channel): the same [`KeyEvent`]s crossterm gives
//! `otf-tui` for the keys a VT100/xterm-style terminal sends, so that
//! [`crate::keys`] works unchanged.
//!
//! Understood: printable UTF-8; Enter, Tab, Backspace, Esc; Ctrl-letters;
//! Alt-keys (`ESC` then the key); CSI and SS3 sequences for the arrows,
//! Home/End, Insert/Delete, Page Up/Down, Shift-Tab and F1-F12, with
//! xterm's modifier parameter (`ESC [ 1 ; 5 A` is Ctrl-Up). Anything else
//! (mouse reports, unknown sequences, invalid UTF-8) is dropped, never an
//! error.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Decodes a byte stream that may split anywhere.
#[derive(Debug, Default)]
pub struct InputParser {
    /// The start of a sequence (or character) the next bytes complete.
    pending: Vec<u8>,
}

/// The longest sequence kept waiting for its end; longer is garbage.
const MAX_PENDING: usize = 64;

enum Parsed {
    /// A key (or nothing, for a dropped sequence) and the bytes it took.
    Done(Option<KeyEvent>, usize),
    /// The bytes so far begin a sequence: wait for more.
    Incomplete,
}

fn key(code: KeyCode, modifiers: KeyModifiers) -> Option<KeyEvent> {
    Some(KeyEvent::new(code, modifiers))
}

impl InputParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys `bytes` complete. A lone `ESC` at the end of `bytes` is the
    /// Esc key (a terminal sends a sequence in one write), as crossterm
    /// decides too.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<KeyEvent> {
        self.pending.extend_from_slice(bytes);
        let mut keys = Vec::new();
        let mut at = 0;
        while at < self.pending.len() {
            let rest = &self.pending[at..];
            match parse(rest) {
                Parsed::Done(k, used) => {
                    keys.extend(k);
                    at += used.max(1);
                }
                Parsed::Incomplete if rest == [0x1b] => {
                    keys.extend(key(KeyCode::Esc, KeyModifiers::NONE));
                    at += 1;
                }
                Parsed::Incomplete if rest.len() > MAX_PENDING => at += 1,
                Parsed::Incomplete => break,
            }
        }
        self.pending.drain(..at);
        keys
    }
}

fn parse(b: &[u8]) -> Parsed {
    let none = KeyModifiers::NONE;
    match b[0] {
        0x1b => parse_escape(b),
        b'\r' | b'\n' => Parsed::Done(key(KeyCode::Enter, none), 1),
        b'\t' => Parsed::Done(key(KeyCode::Tab, none), 1),
        0x7f | 0x08 => Parsed::Done(key(KeyCode::Backspace, none), 1),
        0x00 => Parsed::Done(key(KeyCode::Char(' '), KeyModifiers::CONTROL), 1),
        c @ 0x01..=0x1a => Parsed::Done(
            key(KeyCode::Char((c - 1 + b'a') as char), KeyModifiers::CONTROL),
            1,
        ),
        c @ 0x1c..=0x1f => Parsed::Done(
            key(
                KeyCode::Char((c - 0x1c + b'4') as char),
                KeyModifiers::CONTROL,
            ),
            1,
        ),
        _ => parse_char(b),
    }
}

/// One UTF-8 character; uppercase letters carry Shift, as crossterm's do.
fn parse_char(b: &[u8]) -> Parsed {
    let width = match b[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Parsed::Done(None, 1),
    };
    if b.len() < width {
        // Only continuation bytes may follow the lead byte.
        return if b[1..].iter().all(|c| c & 0xc0 == 0x80) {
            Parsed::Incomplete
        } else {
            Parsed::Done(None, 1)
        };
    }
    match std::str::from_utf8(&b[..width])
        .ok()
        .and_then(|s| s.chars().next())
    {
        Some(c) => {
            let m = if c.is_uppercase() {
                KeyModifiers::SHIFT
            } else {
                KeyModifiers::NONE
            };
            Parsed::Done(key(KeyCode::Char(c), m), width)
        }
        None => Parsed::Done(None, 1),
    }
}

fn parse_escape(b: &[u8]) -> Parsed {
    match b.get(1) {
        None => Parsed::Incomplete,
        Some(b'[') => parse_csi(b),
        Some(b'O') => match b.get(2) {
            None => Parsed::Incomplete,
            Some(&f) => Parsed::Done(final_key(f, KeyModifiers::NONE), 3),
        },
        // ESC ESC: the first is Esc on its own.
        Some(0x1b) => Parsed::Done(key(KeyCode::Esc, KeyModifiers::NONE), 1),
        // Alt and a key.
        Some(_) => match parse(&b[1..]) {
            Parsed::Done(Some(mut k), used) => {
                k.modifiers |= KeyModifiers::ALT;
                Parsed::Done(Some(k), used + 1)
            }
            Parsed::Done(None, used) => Parsed::Done(None, used + 1),
            Parsed::Incomplete => Parsed::Incomplete,
        },
    }
}

/// `ESC [ params final`: parameters are digits and `;`, the final byte is
/// in `@`..`~`.
fn parse_csi(b: &[u8]) -> Parsed {
    let Some(end) = b[2..].iter().position(|c| (0x40..=0x7e).contains(c)) else {
        return if b[2..].iter().all(|c| (0x20..=0x3f).contains(c)) {
            Parsed::Incomplete
        } else {
            // Not a sequence after all: drop the ESC [ and go on.
            Parsed::Done(None, 2)
        };
    };
    let used = 2 + end + 1;
    let params = &b[2..2 + end];
    let fin = b[2 + end];
    // Linux console F1-F5: ESC [ [ A..E.
    if params.is_empty() && fin == b'[' {
        return match b.get(3) {
            None => Parsed::Incomplete,
            Some(c @ b'A'..=b'E') => {
                Parsed::Done(key(KeyCode::F(c - b'A' + 1), KeyModifiers::NONE), 4)
            }
            Some(_) => Parsed::Done(None, 4),
        };
    }
    let Ok(params) = std::str::from_utf8(params) else {
        return Parsed::Done(None, used);
    };
    let mut numbers = params.split(';').map(|p| p.parse::<u16>().ok());
    let first = numbers.next().flatten();
    let modifiers = numbers
        .next()
        .flatten()
        .map_or(KeyModifiers::NONE, modifiers_of);
    let k = if fin == b'~' {
        tilde_key(first.unwrap_or(0), modifiers)
    } else {
        final_key(fin, modifiers)
    };
    Parsed::Done(k, used)
}

/// xterm's modifier parameter: 1 + Shift(1) + Alt(2) + Ctrl(4).
fn modifiers_of(p: u16) -> KeyModifiers {
    let bits = p.saturating_sub(1);
    let mut m = KeyModifiers::NONE;
    if bits & 1 != 0 {
        m |= KeyModifiers::SHIFT;
    }
    if bits & 2 != 0 {
        m |= KeyModifiers::ALT;
    }
    if bits & 4 != 0 {
        m |= KeyModifiers::CONTROL;
    }
    m
}

fn final_key(f: u8, m: KeyModifiers) -> Option<KeyEvent> {
    let code = match f {
        b'A' => KeyCode::Up,
        b'B' => KeyCode::Down,
        b'C' => KeyCode::Right,
        b'D' => KeyCode::Left,
        b'H' => KeyCode::Home,
        b'F' => KeyCode::End,
        b'P' => KeyCode::F(1),
        b'Q' => KeyCode::F(2),
        b'R' => KeyCode::F(3),
        b'S' => KeyCode::F(4),
        b'Z' => return key(KeyCode::BackTab, m | KeyModifiers::SHIFT),
        _ => return None,
    };
    key(code, m)
}

fn tilde_key(n: u16, m: KeyModifiers) -> Option<KeyEvent> {
    let code = match n {
        1 | 7 => KeyCode::Home,
        2 => KeyCode::Insert,
        3 => KeyCode::Delete,
        4 | 8 => KeyCode::End,
        5 => KeyCode::PageUp,
        6 => KeyCode::PageDown,
        11..=15 => KeyCode::F((n - 10) as u8),
        17..=21 => KeyCode::F((n - 11) as u8),
        23 | 24 => KeyCode::F((n - 12) as u8),
        _ => return None,
    };
    key(code, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn keys(bytes: &[u8]) -> Vec<KeyEvent> {
        InputParser::new().feed(bytes)
    }

    #[test]
    fn the_keys_the_tui_uses() {
        assert_eq!(
            keys(b"q\r\x1b[A\x1b[B\x1b[C\x1b[D\x7f\t"),
            vec![
                plain(KeyCode::Char('q')),
                plain(KeyCode::Enter),
                plain(KeyCode::Up),
                plain(KeyCode::Down),
                plain(KeyCode::Right),
                plain(KeyCode::Left),
                plain(KeyCode::Backspace),
                plain(KeyCode::Tab),
            ]
        );
        assert_eq!(keys(b"\x1b"), vec![plain(KeyCode::Esc)]);
        assert_eq!(
            keys(b"\x03"),
            vec![KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)]
        );
        assert_eq!(
            keys(b"X"),
            vec![KeyEvent::new(KeyCode::Char('X'), KeyModifiers::SHIFT)]
        );
        assert_eq!(keys("é".as_bytes()), vec![plain(KeyCode::Char('é'))]);
    }

    #[test]
    fn function_and_editing_keys() {
        let cases: &[(&[u8], KeyCode)] = &[
            (b"\x1bOP", KeyCode::F(1)),
            (b"\x1bOS", KeyCode::F(4)),
            (b"\x1b[15~", KeyCode::F(5)),
            (b"\x1b[17~", KeyCode::F(6)),
            (b"\x1b[21~", KeyCode::F(10)),
            (b"\x1b[24~", KeyCode::F(12)),
            (b"\x1b[[A", KeyCode::F(1)),
            (b"\x1b[H", KeyCode::Home),
            (b"\x1b[4~", KeyCode::End),
            (b"\x1b[5~", KeyCode::PageUp),
            (b"\x1b[6~", KeyCode::PageDown),
            (b"\x1b[3~", KeyCode::Delete),
            (b"\x1bOA", KeyCode::Up),
        ];
        for (bytes, code) in cases {
            assert_eq!(keys(bytes), vec![plain(*code)], "{bytes:?}");
        }
        assert_eq!(
            keys(b"\x1b[1;5A"),
            vec![KeyEvent::new(KeyCode::Up, KeyModifiers::CONTROL)]
        );
        assert_eq!(
            keys(b"\x1b[Z"),
            vec![KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)]
        );
        assert_eq!(
            keys(b"\x1bx"),
            vec![KeyEvent::new(KeyCode::Char('x'), KeyModifiers::ALT)]
        );
    }

    #[test]
    fn a_sequence_split_across_reads_waits_for_its_end() {
        let mut p = InputParser::new();
        assert_eq!(p.feed(b"\x1b[1"), vec![]);
        assert_eq!(
            p.feed(b"5~j"),
            vec![plain(KeyCode::F(5)), plain(KeyCode::Char('j'))]
        );
        assert_eq!(p.feed(&"é".as_bytes()[..1]), vec![]);
        assert_eq!(
            p.feed(&"é".as_bytes()[1..]),
            vec![plain(KeyCode::Char('é'))]
        );
    }

    #[test]
    fn garbage_is_dropped_and_decoding_goes_on() {
        assert_eq!(
            keys(b"\xff\x1b[999~\x1b[<0;3;4Mk"),
            vec![plain(KeyCode::Char('k'))]
        );
        let mut p = InputParser::new();
        let long = [b"\x1b[".as_slice(), &[b'1'; 100]].concat();
        p.feed(&long);
        assert_eq!(p.feed(b"x"), vec![plain(KeyCode::Char('x'))]);
    }

    /// What an xterm sends for `k` (the keys this module decodes).
    fn encode(k: &KeyEvent) -> Vec<u8> {
        let m = k.modifiers;
        match k.code {
            KeyCode::Char(c) if m.contains(KeyModifiers::CONTROL) => vec![c as u8 - b'a' + 1],
            KeyCode::Char(c) => c.to_string().into_bytes(),
            KeyCode::Enter => b"\r".to_vec(),
            KeyCode::Esc => b"\x1b".to_vec(),
            KeyCode::Up => b"\x1b[A".to_vec(),
            KeyCode::Down => b"\x1bOB".to_vec(),
            KeyCode::PageDown => b"\x1b[6~".to_vec(),
            KeyCode::F(n @ 1..=4) => vec![0x1b, b'O', b'P' + n - 1],
            KeyCode::F(n) => {
                let code = [0, 0, 0, 0, 0, 15, 17, 18, 19, 20, 21, 23, 24][n as usize];
                format!("\x1b[{code}~").into_bytes()
            }
            _ => unreachable!("not generated"),
        }
    }

    fn any_key() -> impl Strategy<Value = KeyEvent> {
        prop_oneof![
            proptest::char::range('a', 'z').prop_map(|c| plain(KeyCode::Char(c))),
            proptest::char::range('a', 'z')
                .prop_filter("not Tab, Enter, Backspace", |c| !"hijm".contains(*c))
                .prop_map(|c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)),
            proptest::char::range('à', 'ÿ')
                .prop_filter("lowercase", |c| !c.is_uppercase())
                .prop_map(|c| plain(KeyCode::Char(c))),
            Just(plain(KeyCode::Enter)),
            Just(plain(KeyCode::Esc)),
            Just(plain(KeyCode::Up)),
            Just(plain(KeyCode::Down)),
            Just(plain(KeyCode::PageDown)),
            (1u8..=12).prop_map(|n| plain(KeyCode::F(n))),
        ]
    }

    proptest! {
        /// Keys typed one write each come back as they were typed, and no
        /// bytes whatever make the parser fail.
        #[test]
        fn typed_keys_round_trip(typed in proptest::collection::vec(any_key(), 0..40)) {
            let mut p = InputParser::new();
            let mut got = Vec::new();
            for k in &typed {
                got.extend(p.feed(&encode(k)));
            }
            prop_assert_eq!(got, typed);
        }

        #[test]
        fn keys_without_a_lone_esc_survive_any_split(
            typed in proptest::collection::vec(any_key(), 0..40),
            cut in any::<prop::sample::Index>(),
        ) {
            let typed: Vec<_> = typed.into_iter().filter(|k| k.code != KeyCode::Esc).collect();
            let bytes: Vec<u8> = typed.iter().flat_map(encode).collect();
            let cut = if bytes.is_empty() { 0 } else { cut.index(bytes.len()) };
            // A cut right after an ESC makes it the Esc key (as on a real
            // terminal); any other cut changes nothing.
            prop_assume!(cut == 0 || bytes[cut - 1] != 0x1b);
            let mut p = InputParser::new();
            let mut got = p.feed(&bytes[..cut]);
            got.extend(p.feed(&bytes[cut..]));
            prop_assert_eq!(got, typed);
        }

        #[test]
        fn any_bytes_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut p = InputParser::new();
            let _ = p.feed(&bytes);
            prop_assert!(p.pending.len() <= MAX_PENDING + 8);
        }
    }
}
