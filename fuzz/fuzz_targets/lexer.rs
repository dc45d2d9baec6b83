//! The lexer on arbitrary bytes, read in chunks and with a segment limit taken from the first
//! two bytes: it must not panic, its buffer must stay within `LexerOptions::buffer_bound`, and it
//! must give the same tokens as when it reads everything at once.
#![no_main]

use eligo::lexer::{Lexer, LexerOptions, Token};
use libfuzzer_sys::fuzz_target;

fn lex(data: &[u8], opts: LexerOptions) -> Vec<String> {
    let mut lx = Lexer::with_options(data, opts);
    let mut out = Vec::new();
    while let Some(t) = lx.next_token() {
        out.push(match t {
            Token::Segment(s) => format!(
                "S {:?} {:?} {} {:?}",
                s.raw(),
                s.position(),
                s.leading_blanks(),
                s.delimiters()
            ),
            Token::Warning(e) => format!("W {e:?}"),
            Token::Error(e) => format!("E {e:?}"),
        });
        assert!(lx.buffer_capacity() <= opts.buffer_bound());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (head, data) = match data {
        [a, b, rest @ ..] => ((*a, *b), rest),
        _ => ((0, 0), data),
    };
    let small = LexerOptions {
        max_segment_len: 16 + head.0 as usize * 4,
        chunk: 1 + (head.1 % 32) as usize,
    };
    let whole = LexerOptions {
        chunk: data.len().max(1) + 4096,
        ..small
    };
    assert_eq!(lex(data, small), lex(data, whole));
});
