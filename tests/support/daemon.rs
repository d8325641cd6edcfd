//! A `converge run` process for the tests: its output in a log file, signals, SIGTERM and its
//! exit code; killed when dropped, so that a failing test leaves no daemon behind.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `command` (a `converge … run`), its stdout and stderr to `log`.
    pub fn spawn(mut command: Command, log: PathBuf) -> Daemon {
        let file = fs::File::create(&log).expect("log file");
        let child = command
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .expect("converge run");
        Daemon { child, log }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child, not yet waited for (so its pid is not reused).
        unsafe { libc::kill(pid, signal) };
    }

    /// SIGTERM, then the exit code; fails the test if it has not exited within `wait`.
    pub fn stop(mut self, wait: Duration) -> i32 {
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < wait,
                "the daemon did not exit on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
