//! The runner host's loop: one thread, `poll` on the executor's socket and on one pidfd per runner; a launch
//! forks a runner, a readable pidfd reaps one. Nothing here allocates between `fork` and the runner's own code
//! beyond what a single-threaded process may do.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::{tail_line, title_bytes, HostEvent, Launch, HOST_VERB, STDERR_TAIL};

/// A launch line longer than this is refused (the executor's are well under a kilobyte).
const MAX_LINE: usize = 64 * 1024;
/// How long a blocked write to the executor may wait before the host takes it as gone.
const WRITE_PATIENCE_MS: i32 = 10_000;

/// One forked runner.
struct Runner {
    id: u64,
    pid: i32,
    /// Readable when the runner ends; `None` when the kernel has no pidfds (then it is polled).
    pidfd: Option<OwnedFd>,
    stderr: File,
}

/// Serves the executor on stdin until it goes away and the last runner has ended. `run` is a runner's whole
/// life (it returns the runner's exit code) and runs only in forked children.
pub fn serve(run: &dyn Fn(&Launch) -> i32) -> i32 {
    if !stdin_is_socket() {
        eprintln!("dagctl tasks host: started by the local executor only (stdin must be its socket)");
        return 2;
    }
    let title = Title::of_this_process();
    title.set(&title_bytes(&HOST_VERB.map(String::from)));
    // SAFETY: fd 0 is a socket (checked above) that nothing else in this process owns.
    let socket = unsafe { UnixStream::from_raw_fd(0) };
    if socket.set_nonblocking(true).is_err() {
        return 1;
    }
    let mut open = send(
        &socket,
        &HostEvent::Ready {
            pid: std::process::id(),
            room: title.room,
        },
    );
    let mut runners: Vec<Runner> = Vec::new();
    let mut inbox: Vec<u8> = Vec::new();
    let mut shut = false;
    loop {
        if !open && !shut {
            // Gone, refused or not reading: the executor sees the end of the socket at once (its launches
            // waiting here learn so), however long the runners still run.
            let _ = socket.shutdown(std::net::Shutdown::Both);
            shut = true;
        }
        if !open && runners.is_empty() {
            return 0;
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(runners.len() + 1);
        if open {
            fds.push(pollfd(socket.as_raw_fd(), libc::POLLIN));
        }
        let mut unwatched = false;
        for runner in &runners {
            match &runner.pidfd {
                Some(fd) => fds.push(pollfd(fd.as_raw_fd(), libc::POLLIN)),
                None => unwatched = true,
            }
        }
        let timeout = if unwatched { 50 } else { 1000 };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if ready < 0 && std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            eprintln!("dagctl tasks host: poll failed: {}", std::io::Error::last_os_error());
            return 1;
        }
        if open && fds.first().is_some_and(|f| f.revents != 0) {
            open = read_launches(&socket, &mut inbox, |launch| {
                let event = match start(&launch, &title, run) {
                    Ok(runner) => {
                        let event = HostEvent::Started {
                            id: runner.id,
                            pid: runner.pid as u32,
                        };
                        runners.push(runner);
                        event
                    }
                    Err(error) => HostEvent::NotStarted { id: launch.id, error },
                };
                send(&socket, &event)
            });
        }
        // Reap every runner that ended (a pidfd that polled readable, or any runner when some are unwatched).
        let mut index = 0;
        while index < runners.len() {
            match reap(runners[index].pid) {
                Some((code, signal)) => {
                    let runner = runners.swap_remove(index);
                    let event = HostEvent::Exited {
                        id: runner.id,
                        pid: runner.pid as u32,
                        code,
                        signal,
                        stderr: stderr_tail(&runner.stderr),
                    };
                    if open {
                        open = send(&socket, &event);
                    }
                }
                None => index += 1,
            }
        }
    }
}

fn stdin_is_socket() -> bool {
    // SAFETY: fstat writes into the zeroed struct it is given; the result is checked.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(0, &mut stat) }) == 0 && (stat.st_mode & libc::S_IFMT) == libc::S_IFSOCK
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

/// Reads what the socket has and hands each complete line's launch to `launch`. Returns whether the executor
/// is still there.
fn read_launches(socket: &UnixStream, inbox: &mut Vec<u8>, mut launch: impl FnMut(Launch) -> bool) -> bool {
    let mut buffer = [0u8; 16 * 1024];
    let mut open = true;
    loop {
        match (&*socket).read(&mut buffer) {
            Ok(0) => {
                open = false;
                break;
            }
            Ok(n) => inbox.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => {
                open = false;
                break;
            }
        }
    }
    while let Some(end) = inbox.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = inbox.drain(..=end).collect();
        match serde_json::from_slice::<Launch>(&line) {
            Ok(one) => {
                if !launch(one) {
                    return false;
                }
            }
            Err(err) => eprintln!("dagctl tasks host: a launch that is not one: {err}"),
        }
    }
    if inbox.len() > MAX_LINE {
        eprintln!("dagctl tasks host: a line over {MAX_LINE} bytes from the executor: closing");
        return false;
    }
    open
}

/// Writes one event line; false when the executor is gone (or does not read for a long time).
fn send(socket: &UnixStream, event: &HostEvent) -> bool {
    let Ok(mut line) = serde_json::to_vec(event) else {
        return false;
    };
    line.push(b'\n');
    let mut written = 0;
    while written < line.len() {
        match (&*socket).write(&line[written..]) {
            Ok(0) => return false,
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let mut fds = [pollfd(socket.as_raw_fd(), libc::POLLOUT)];
                // SAFETY: one valid pollfd for the call.
                if unsafe { libc::poll(fds.as_mut_ptr(), 1, WRITE_PATIENCE_MS) } <= 0 {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Forks one runner.
fn start(launch: &Launch, title: &Title, run: &dyn Fn(&Launch) -> i32) -> Result<Runner, String> {
    let needed = title_bytes(&launch.argv).len();
    if needed > title.room {
        return Err(format!(
            "its arguments ({needed} bytes) do not fit the host's title room ({})",
            title.room
        ));
    }
    let stderr = memory_file().map_err(|e| format!("cannot make its stderr: {e}"))?;
    // SAFETY: this process is single-threaded (it never starts a runtime or a thread), so the child may run
    // any code; it leaves only through `exit`.
    match unsafe { fork() } {
        Err(err) => Err(format!("fork failed: {err}")),
        Ok(ForkResult::Child) => become_runner(launch, title, run, stderr.as_raw_fd()),
        Ok(ForkResult::Parent { child }) => {
            // The child makes itself a group leader too; set here as well, so the executor's `killpg` reaches
            // it from the moment it hears of its pid.
            let _ = nix::unistd::setpgid(child, child);
            Ok(Runner {
                id: launch.id,
                pid: child.as_raw(),
                pidfd: pidfd_open(child.as_raw()),
                stderr,
            })
        }
    }
}

/// The child's side of a launch: its own process group, stdin from `/dev/null`, stderr to the memory file,
/// nothing else of the host's open, its title, then the runner.
fn become_runner(launch: &Launch, title: &Title, run: &dyn Fn(&Launch) -> i32, stderr: RawFd) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
        match File::open("/dev/null") {
            // SAFETY: both are open descriptors of this process.
            Ok(null) => unsafe { libc::dup2(null.as_raw_fd(), 0) },
            // Never the executor's socket: a runner holding it would hide the host's end from the executor.
            // SAFETY: closing this process's fd 0.
            Err(_) => unsafe { libc::close(0) },
        };
        // SAFETY: as above.
        unsafe { libc::dup2(stderr, 2) };
        close_from(3);
        title.set(&title_bytes(&launch.argv));
        run(launch)
    }))
    .unwrap_or(101);
    std::process::exit(code)
}

/// Closes every descriptor from `first` on (the host's socket copy, other runners' pidfds and stderr files).
fn close_from(first: u32) {
    // SAFETY: close_range only closes descriptors; none of them is used by this child afterwards.
    let done = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) } == 0;
    if !done {
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                    .filter(|fd| *fd >= first as i32)
                    .collect()
            })
            .unwrap_or_default();
        for fd in fds {
            // SAFETY: closing a descriptor this child does not use.
            unsafe { libc::close(fd) };
        }
    }
}

/// A file in memory (never on disk) for a runner's stderr.
fn memory_file() -> std::io::Result<File> {
    let name = c"dagctl-runner-stderr";
    // SAFETY: a valid NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new descriptor owned by nothing else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `Some((code, signal))` once `pid` has ended (and is reaped).
fn reap(pid: i32) -> Option<(Option<i32>, Option<i32>)> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some((Some(code), None)),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some((None, Some(signal as i32))),
        Ok(_) => None,
        Err(nix::errno::Errno::ECHILD) => Some((None, None)),
        Err(_) => None,
    }
}

fn stderr_tail(file: &File) -> String {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(STDERR_TAIL as u64);
    let mut bytes = vec![0u8; (len - from) as usize];
    match file.read_at(&mut bytes, from) {
        Ok(n) => tail_line(&bytes[..n]),
        Err(_) => String::new(),
    }
}

/// The part of this process's command line after its program name, which a runner rewrites to its own
/// arguments (as PostgreSQL and nginx title their processes): `/proc/<pid>/cmdline` reads this memory.
struct Title {
    start: usize,
    room: usize,
}

impl Title {
    fn of_this_process() -> Title {
        Self::find().unwrap_or(Title { start: 0, room: 0 })
    }

    fn find() -> Option<Title> {
        // `arg_start` and `arg_end` are fields 48 and 49 of /proc/self/stat (man 5 proc), counted from the
        // state (field 3) after the command name's closing parenthesis.
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let arg_start: usize = fields.get(48 - 3)?.parse().ok()?;
        let arg_end: usize = fields.get(49 - 3)?.parse().ok()?;
        use std::os::unix::ffi::OsStrExt;
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let start = arg_start + args.first()?.as_bytes().len() + 1;
        if arg_end <= start || arg_start == 0 {
            return None;
        }
        let room = arg_end - start;
        // The memory must hold exactly the arguments this process was given, else it is not what we think.
        let expected: Vec<u8> = args[1..]
            .iter()
            .flat_map(|a| a.as_bytes().iter().copied().chain([0]))
            .collect();
        // SAFETY: [arg_start, arg_end) is this process's argument area (mapped, readable and writable).
        let present = unsafe { std::slice::from_raw_parts(start as *const u8, room) };
        (present == expected.as_slice()).then_some(Title { start, room })
    }

    /// Writes `bytes` (NUL-separated arguments) as the title; the rest of the room becomes NULs.
    fn set(&self, bytes: &[u8]) -> bool {
        if self.room == 0 || bytes.len() > self.room {
            return false;
        }
        // SAFETY: [start, start + room) is this process's argument area, checked in `find`; nothing in this
        // process reads the arguments through Rust references while it is written.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.start as *mut u8, bytes.len());
            std::ptr::write_bytes((self.start + bytes.len()) as *mut u8, 0, self.room - bytes.len());
        }
        true
    }
}
