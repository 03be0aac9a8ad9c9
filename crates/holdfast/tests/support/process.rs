//! Running helper programs (python3, mosquitto_pub, mosquitto_sub) with bounded waits.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What a finished (or timed-out) command printed.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// A readable account of the run for assertion messages.
    pub fn describe(&self) -> String {
        let status = if self.timed_out {
            "TIMED OUT (killed)".to_string()
        } else {
            format!("{:?}", self.status)
        };
        format!(
            "exit: {status}\n----- stdout -----\n{}\n----- stderr -----\n{}\n------------------",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `cmd` to completion, killing it after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is it installed? see scripts/test)"));
    let out = reader(child.stdout.take().expect("stdout"));
    let err = reader(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    CmdOutput {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A program running in the background whose output is read line by line
/// (stderr lines are prefixed with `stderr: `). Dropping it kills the program.
pub struct BgProcess {
    name: String,
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl BgProcess {
    pub fn spawn(cmd: &mut Command) -> BgProcess {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run {cmd:?}: {e} (is it installed? see scripts/test)")
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx2.send(format!("stderr: {line}")).is_err() {
                    break;
                }
            }
        });
        BgProcess {
            name: format!("{cmd:?}"),
            child,
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for a line matching `pred`; returns it (all lines read on the way
    /// are kept in `lines()`).
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Waits up to `timeout` for the program to exit and drains its output.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => break None,
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(_) => break None,
            }
        };
        if status.is_some() {
            // The pipes close with the process: take what is left.
            while let Ok(line) = self.rx.recv_timeout(Duration::from_millis(500)) {
                self.seen.push(line);
            }
        }
        status
    }

    pub fn lines(&self) -> &[String] {
        &self.seen
    }

    pub fn describe(&self) -> String {
        format!(
            "----- output of {} -----\n{}\n-----",
            self.name,
            self.seen.join("\n")
        )
    }
}

impl Drop for BgProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BgProcess {
    /// Kills the program with SIGKILL now; what it printed stays readable (`wait_exit`, `lines`).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }
}
