//! The clock supervisor: runs a node program whose wall clock reads `offset` away from the host's, without
//! touching the host's clock, for Go clients that libfaketime cannot reach.
//!
//! A Go program reads the time through the kernel's vDSO, not libc, so no preloaded library sees the call.
//! The supervisor (i) starts the program traced, stopped at its first instruction, and marks the vDSO's entry
//! in the program's auxiliary vector (`AT_SYSINFO_EHDR`) as `AT_IGNORE`: the Go runtime and glibc then fall back
//! to real system calls; (ii) before the program starts, installs a seccomp filter that hands every wall-clock
//! call (`clock_gettime` of `CLOCK_REALTIME`/`_COARSE`/`TAI`, `gettimeofday`, `time`) to the supervisor
//! (`SECCOMP_RET_USER_NOTIF`); (iii) answers each such call with the host's time plus `offset`, written into
//! the caller's memory. Monotonic clocks are left alone. The supervisor ignores SIGTERM, SIGINT and SIGHUP (it
//! shares the node's process group, so the node gets them too) and ends with the node's exit status.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::libc;

use super::filter::{self, SockFprog, SYS_CLOCK_GETTIME, SYS_GETTIMEOFDAY, SYS_TIME};

/// `struct seccomp_data`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct SeccompData {
    nr: i32,
    arch: u32,
    instruction_pointer: u64,
    args: [u64; 6],
}

/// `struct seccomp_notif`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

/// `struct seccomp_notif_resp`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'!' as u64) << 8) | nr
}
const NOTIF_RECV: u64 = ioc(3, 0, std::mem::size_of::<Notif>());
const NOTIF_SEND: u64 = ioc(3, 1, std::mem::size_of::<NotifResp>());
const NOTIF_ID_VALID: u64 = ioc(1, 2, std::mem::size_of::<u64>());
const NOTIF_SET_FLAGS: u64 = ioc(1, 4, std::mem::size_of::<u64>());
/// The caller and the supervisor hand the CPU to each other directly (Linux 6.6+).
const FD_SYNC_WAKE_UP: u64 = 1;

const AT_NULL: u64 = 0;
const AT_IGNORE: u64 = 1;
const AT_SYSINFO_EHDR: u64 = 33;

fn os_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Runs `program` with `args` under a wall clock `offset_ns` away from the host's; the program's exit code
/// (128 + the signal for a program killed by one), or why it could not be started.
pub fn run(offset_ns: i64, program: &OsString, args: &[OsString]) -> io::Result<i32> {
    if !cfg!(target_arch = "x86_64") {
        return Err(io::Error::other("the clock supervisor runs on x86_64 only"));
    }
    let mut pair = [0 as RawFd; 2];
    // SAFETY: `pair` has room for the two descriptors socketpair writes.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(os_error("socketpair"));
    }
    // SAFETY: both descriptors were just made and are owned here alone.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    let program_text = filter::program();
    let fprog = SockFprog {
        len: program_text.len() as u16,
        filter: program_text.as_ptr(),
    };
    let sock = theirs.as_raw_fd();
    let fprog_addr = &fprog as *const SockFprog as usize;
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: between fork and exec the closure makes only async-signal-safe system calls on memory allocated
    // before the fork (the filter, the control-message buffer on its own stack).
    unsafe {
        command.pre_exec(move || {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            let listener = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                fprog_addr as *const SockFprog,
            );
            if listener < 0 {
                return Err(io::Error::last_os_error());
            }
            send_fd(sock, listener as RawFd)?;
            libc::close(listener as RawFd);
            Ok(())
        });
    }
    let child = command.spawn()?;
    drop(theirs);
    let pid = child.id() as libc::pid_t;
    // The child is reaped below with waitpid; `Child` would not kill it on drop.
    drop(child);
    let started = (|| -> io::Result<OwnedFd> {
        let listener = recv_fd(ours.as_raw_fd())?;
        wait_exec_stop(pid)?;
        hide_vdso(pid)?;
        Ok(listener)
    })();
    let listener = match started {
        Ok(l) => l,
        Err(e) => {
            // SAFETY: plain signal and wait on our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL);
            }
            return Err(e);
        }
    };
    // SAFETY: detaching our stopped tracee; it runs on from its first instruction.
    if unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) } != 0 {
        let e = os_error("ptrace(PTRACE_DETACH)");
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL);
        }
        return Err(e);
    }
    ignore_stop_signals();
    let mem = File::options()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))?;
    serve(&listener, &mem, offset_ns, pid)
}

/// Sends `fd` over the unix socket `sock` (SCM_RIGHTS). Async-signal-safe: no allocation.
fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one descriptor's control message, aligned for cmsghdr.
    let mut space = [0u64; 4];
    // SAFETY: msghdr is plain data; every pointer in it refers to the buffers above, alive for the call.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        if libc::sendmsg(sock, &msg, 0) != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`]; an error when the child failed before sending it.
fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut space = [0u64; 4];
    // SAFETY: as in send_fd; the received descriptor is owned from here on.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&space);
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(os_error("receiving the seccomp listener"));
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n == 0 || cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other(
                "the program ended before its seccomp filter was in place",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Waits for the traced child's stop at its new program's first instruction.
fn wait_exec_stop(pid: libc::pid_t) -> io::Result<()> {
    let mut status = 0;
    // SAFETY: waiting on our own child.
    if unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } != pid {
        return Err(os_error("waitpid"));
    }
    if !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != libc::SIGTRAP {
        return Err(io::Error::other(format!(
            "the program did not stop at exec as expected (wait status {status:#x})"
        )));
    }
    Ok(())
}

/// Marks the vDSO's entry in the stopped program's auxiliary vector as ignored. The vector follows argc,
/// argv and envp on the initial stack, whose address /proc/PID/stat gives (`startstack`).
fn hide_vdso(pid: libc::pid_t) -> io::Result<()> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command: state is field 3; startstack is field 28.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let start: u64 = rest
        .split_whitespace()
        .nth(28 - 3)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("no stack address in /proc/PID/stat"))?;
    let mem = File::options()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))?;
    let word = |at: u64| -> io::Result<u64> {
        let mut b = [0u8; 8];
        mem.read_exact_at(&mut b, at)?;
        Ok(u64::from_ne_bytes(b))
    };
    let argc = word(start)?;
    if argc > 1 << 20 {
        return Err(io::Error::other("the initial stack does not start with argc"));
    }
    // argv[argc] is NULL; envp follows up to its NULL.
    let mut at = start + 8 * (argc + 2);
    let mut bound = 0;
    while word(at)? != 0 {
        at += 8;
        bound += 1;
        if bound > 1 << 20 {
            return Err(io::Error::other("no end to the environment on the initial stack"));
        }
    }
    at += 8;
    for _ in 0..256 {
        let kind = word(at)?;
        if kind == AT_NULL {
            return Ok(());
        }
        if kind == AT_SYSINFO_EHDR {
            mem.write_all_at(&AT_IGNORE.to_ne_bytes(), at)?;
            return Ok(());
        }
        at += 16;
    }
    Err(io::Error::other("no end to the auxiliary vector"))
}

fn ignore_stop_signals() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: setting a signal's disposition to ignore.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}

/// The host's time on `clock`, shifted by `offset_ns`: (seconds, nanoseconds).
fn shifted(clock: libc::clockid_t, offset_ns: i64) -> (i64, i64) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    let total = i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec) + i128::from(offset_ns);
    (
        total.div_euclid(1_000_000_000) as i64,
        total.rem_euclid(1_000_000_000) as i64,
    )
}

/// Answers the program's wall-clock calls until it ends; its exit code.
fn serve(listener: &OwnedFd, mem: &File, offset_ns: i64, pid: libc::pid_t) -> io::Result<i32> {
    let fd = listener.as_raw_fd();
    // Best effort: an older kernel refuses it, and only speed is lost.
    // SAFETY: the flag word is a valid u64 argument for this request.
    unsafe { libc::ioctl(fd, NOTIF_SET_FLAGS as _, FD_SYNC_WAKE_UP) };
    loop {
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, 1000) };
        if ready < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(os_error("poll"));
        }
        if ready == 0 {
            // A quiet second: has the program ended (its exit may not hang up a listener it never used)?
            if let Some(code) = exited(pid) {
                return Ok(code);
            }
            continue;
        }
        if poll.revents & libc::POLLHUP != 0 {
            // No task of the filter is left: the program ended.
            let mut status = 0;
            // SAFETY: waiting on our own child.
            unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
            return Ok(code_of(status));
        }
        let mut notif = Notif::default();
        // SAFETY: `notif` has the size the request number encodes.
        if unsafe { libc::ioctl(fd, NOTIF_RECV as _, &mut notif) } != 0 {
            // The caller was interrupted (a signal) between the poll and the receive.
            continue;
        }
        let mut resp = NotifResp {
            id: notif.id,
            ..Default::default()
        };
        let args = notif.data.args;
        let written = match notif.data.nr {
            SYS_CLOCK_GETTIME => {
                let (s, ns) = shifted(args[0] as libc::clockid_t, offset_ns);
                write_pair(mem, args[1], s, ns)
            }
            SYS_GETTIMEOFDAY => {
                let (s, ns) = shifted(libc::CLOCK_REALTIME, offset_ns);
                if args[0] == 0 {
                    Ok(())
                } else {
                    write_pair(mem, args[0], s, ns / 1000)
                }
            }
            SYS_TIME => {
                let (s, _) = shifted(libc::CLOCK_REALTIME, offset_ns);
                resp.val = s;
                if args[0] == 0 {
                    Ok(())
                } else {
                    mem.write_all_at(&s.to_ne_bytes(), args[0])
                }
            }
            _ => {
                resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
                Ok(())
            }
        };
        if written.is_err() {
            resp.error = -libc::EFAULT;
            resp.val = 0;
        }
        let mut id = notif.id;
        // SAFETY: the request still stands (its thread was not killed meanwhile); then the answer.
        unsafe {
            if libc::ioctl(fd, NOTIF_ID_VALID as _, &mut id) != 0 {
                continue;
            }
            libc::ioctl(fd, NOTIF_SEND as _, &mut resp);
        }
    }
}

fn write_pair(mem: &File, at: u64, a: i64, b: i64) -> io::Result<()> {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_ne_bytes());
    bytes[8..].copy_from_slice(&b.to_ne_bytes());
    mem.write_all_at(&bytes, at)
}

/// The child's exit code if it has ended.
fn exited(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: a non-blocking wait on our own child.
    let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
    if got == pid && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
        return Some(code_of(status));
    }
    if got < 0 {
        return Some(1);
    }
    None
}

fn code_of(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}
