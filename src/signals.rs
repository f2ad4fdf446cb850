//! Termination signals as an ordinary blocking call. SIGTERM and SIGINT are blocked in
//! every thread and collected by one thread with `sigwait`, so shutdown logic runs as
//! normal code instead of inside a signal handler.
//!
//! Call [`TerminationSignals::block`] first thing in `main`, before any thread exists:
//! threads inherit the signal mask of the thread that creates them.

use crate::{Error, Result};

pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    pub fn block() -> Result<TerminationSignals> {
        // SAFETY: sigemptyset/sigaddset initialise the set; pthread_sigmask only changes
        // this thread's mask, which threads spawned later inherit.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(Error::io(
                    "blocking SIGTERM and SIGINT",
                    std::io::Error::from_raw_os_error(rc),
                ));
            }
            Ok(TerminationSignals { set })
        }
    }

    /// Blocks until SIGTERM or SIGINT arrives; returns its name.
    pub fn wait(&self) -> &'static str {
        loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: `set` was initialised in `block`; sigwait writes one int.
            let rc = unsafe { libc::sigwait(&self.set, &mut signal) };
            if rc == 0 {
                return if signal == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
            }
        }
    }
}
