//! A JSON list written to stdout item by item (`[a,b,...]` on one line), so that output of any length needs no
//! more memory than one item. A closed pipe (`| head`) ends the program quietly.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

pub struct JsonList {
    out: std::io::BufWriter<std::io::Stdout>,
    first: bool,
}

impl JsonList {
    pub fn start() -> anyhow::Result<Self> {
        let mut list = JsonList {
            out: std::io::BufWriter::new(std::io::stdout()),
            first: true,
        };
        list.write(b"[")?;
        Ok(list)
    }

    pub fn push(&mut self, item: &impl Serialize) -> anyhow::Result<()> {
        if !std::mem::replace(&mut self.first, false) {
            self.write(b",")?;
        }
        let text = serde_json::to_string(item)?;
        self.write(text.as_bytes())
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        self.write(b"]\n")?;
        let result = self.out.flush();
        stdout_result(result)
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let result = self.out.write_all(bytes);
        stdout_result(result)
    }
}

fn stdout_result(result: std::io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.context("cannot write to stdout"),
    }
}
