//! Feeds arbitrary bytes to the NATS wire parser, whole and split at every
//! chunk size the input's first byte picks: it must never panic, never take
//! more than it was given, and give the same operations however the bytes
//! arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orderly_bus::wire::cmd::Command;
use orderly_bus::wire::parser::Parser;

type Ops = Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>;

fn run(data: &[u8], chunk: usize) -> (Ops, bool) {
    let mut parser = Parser::with_limits(256, 4096);
    let mut buf = Vec::new();
    let mut ops = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match parser.parse(&buf) {
                Ok(Some(p)) => {
                    assert!(p.len <= buf.len());
                    // Commands must not panic on whatever args the parser passes.
                    let _ = Command::from_op(p.op);
                    ops.push((p.op.args.to_vec(), p.op.headers.to_vec(), p.op.payload.to_vec()));
                    buf.drain(..p.len);
                }
                Ok(None) => break,
                Err(_) => return (ops, true),
            }
        }
    }
    (ops, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let whole = run(rest, rest.len().max(1));
    let split = run(rest, usize::from(first % 17) + 1);
    assert_eq!(whole, split);
});
