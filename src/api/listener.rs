//! The listening socket. Under systemd socket activation (`dob-api.socket`) the socket
//! is passed in as fd 3 and outlives restarts, so a deploy never refuses a connection;
//! otherwise the configured address is bound here.

use crate::{Error, Result};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd};

/// `SD_LISTEN_FDS_START`: the first fd systemd passes.
const FIRST_PASSED_FD: i32 = 3;

/// Accept-queue length for a socket bound here; the kernel caps it at
/// `net.core.somaxconn`. std binds with 128, and a burst of connections beyond the
/// queue has its SYNs dropped, so a new client waits a whole SYN retransmit (1 s).
/// Matches `Backlog=` in `dob-api.socket`.
const BACKLOG: i32 = 4096;

/// Where the listening socket came from, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Systemd,
    Bound,
}

/// The socket systemd passed, if any, else a fresh bind of `addr`.
pub fn open(addr: SocketAddr) -> Result<(TcpListener, Source)> {
    if let Some(listener) = from_systemd()? {
        return Ok((listener, Source::Systemd));
    }
    let listener = TcpListener::bind(addr).map_err(|e| Error::io(format!("binding {addr}"), e))?;
    // listen(2) again on a listening socket only resizes its queue.
    // SAFETY: the fd is a valid listening socket owned by `listener`.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::io(format!("setting the backlog of {addr}"), e));
    }
    Ok((listener, Source::Bound))
}

/// Implements the `sd_listen_fds` protocol: `LISTEN_PID` must be this process and
/// `LISTEN_FDS` at least 1. The variables are removed so children do not inherit them.
fn from_systemd() -> Result<Option<TcpListener>> {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    if !pid_matches || count < 1 {
        return Ok(None);
    }
    for key in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(key);
    }
    if count > 1 {
        log::warn!("systemd passed {count} sockets; using the first and ignoring the rest");
    }
    let fd = FIRST_PASSED_FD;
    // SAFETY: fstat/getsockopt only read the fd's metadata; an invalid fd fails cleanly.
    let is_listening_socket = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        let mut accepting: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::fstat(fd, &mut stat) == 0
            && (stat.st_mode & libc::S_IFMT) == libc::S_IFSOCK
            && libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&mut accepting as *mut libc::c_int).cast(),
                &mut len,
            ) == 0
            && accepting == 1
    };
    if !is_listening_socket {
        return Err(Error::other(
            "LISTEN_FDS is set but fd 3 is not a listening socket",
        ));
    }
    // SAFETY: fd 3 was handed to this process by systemd for it to own, and was
    // checked above to be a listening socket. Nothing else in the process uses it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    // systemd leaves passed fds without FD_CLOEXEC.
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    listener
        .set_nonblocking(false)
        .map_err(|e| Error::io("configuring the socket passed by systemd", e))?;
    Ok(Some(listener))
}

/// Raises the soft open-files limit to the hard limit: every client connection is a
/// file descriptor, and the default soft limit of 1024 is far below what one host can
/// serve. Failure is not fatal; the server runs with the limit it has.
pub fn raise_fd_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit on a properly initialised struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return None;
            }
        }
        Some(limit.rlim_cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    #[test]
    fn a_bound_socket_queues_more_connections_than_std_default_backlog() {
        // Nothing accepts: every connection must fit in the kernel's queue. With std's
        // backlog of 128 the kernel drops the SYNs beyond it and connect times out.
        let (listener, source) = open("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(source, Source::Bound);
        let addr = listener.local_addr().unwrap();
        let queued: Vec<TcpStream> = (0..300)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                    .unwrap_or_else(|e| panic!("connection {i} not queued: {e}"))
            })
            .collect();
        assert_eq!(queued.len(), 300);
    }
}
