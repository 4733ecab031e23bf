//! The seccomp filter of a skewed node: the calls that read the wall clock go to the supervisor
//! (`SECCOMP_RET_USER_NOTIF`), everything else runs as it would. x86_64 only: the syscall numbers and the
//! `seccomp_data` layout are this architecture's.

/// One classic-BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
pub struct SockFprog {
    pub len: u16,
    pub filter: *const SockFilter,
}

pub const SYS_GETTIMEOFDAY: i32 = 96;
pub const SYS_TIME: i32 = 201;
pub const SYS_CLOCK_GETTIME: i32 = 228;

/// The wall clocks shifted: `CLOCK_REALTIME`, `CLOCK_REALTIME_COARSE`, `CLOCK_TAI`. The monotonic and CPU
/// clocks are left alone (timers and the Go scheduler run on them, and a skewed wall clock does not move them).
pub const WALL_CLOCKS: [u32; 3] = [0, 5, 11];

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

// Offsets in `struct seccomp_data`: nr (i32), arch (u32), instruction_pointer (u64), args ([u64; 6]).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter { code, jt: 0, jf: 0, k }
}

fn jump(k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code: JEQ_K, jt, jf, k }
}

/// The program: another architecture (or the x32 ABI) runs as it is; `gettimeofday` and `time` go to the
/// supervisor; `clock_gettime` does for the wall clocks only.
pub fn program() -> Vec<SockFilter> {
    let mut p = vec![
        stmt(LD_W_ABS, ARCH),
        jump(AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, SECCOMP_RET_ALLOW),
        stmt(LD_W_ABS, NR),
        jump(SYS_GETTIMEOFDAY as u32, 3, 0),
        jump(SYS_TIME as u32, 2, 0),
        jump(SYS_CLOCK_GETTIME as u32, 2, 0),
        stmt(RET_K, SECCOMP_RET_ALLOW),
        stmt(RET_K, SECCOMP_RET_USER_NOTIF),
        // clock_gettime: which clock (the low word of its first argument).
        stmt(LD_W_ABS, ARG0_LOW),
    ];
    let n = WALL_CLOCKS.len() as u8;
    for (i, clock) in WALL_CLOCKS.iter().enumerate() {
        // Jump to the USER_NOTIF return after the last comparison on a match.
        p.push(jump(*clock, n - i as u8, 0));
    }
    p.push(stmt(RET_K, SECCOMP_RET_ALLOW));
    p.push(stmt(RET_K, SECCOMP_RET_USER_NOTIF));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions the program uses, over one `seccomp_data`.
    fn run(program: &[SockFilter], arch: u32, nr: i32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let mut acc = 0u32;
        let mut pc = 0usize;
        for _ in 0..program.len() {
            let ins = program[pc];
            match ins.code {
                LD_W_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                    pc += 1;
                }
                JEQ_K => pc += 1 + if acc == ins.k { ins.jt } else { ins.jf } as usize,
                RET_K => return ins.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        panic!("the program ran off its end")
    }

    #[test]
    fn only_the_wall_clock_reaches_the_supervisor() {
        let p = program();
        let x86 = AUDIT_ARCH_X86_64;
        for clock in WALL_CLOCKS {
            assert_eq!(
                run(&p, x86, SYS_CLOCK_GETTIME, u64::from(clock)),
                SECCOMP_RET_USER_NOTIF
            );
        }
        for clock in [1u64, 4, 6, 7, 2, 3] {
            assert_eq!(
                run(&p, x86, SYS_CLOCK_GETTIME, clock),
                SECCOMP_RET_ALLOW,
                "clock {clock}"
            );
        }
        assert_eq!(run(&p, x86, SYS_GETTIMEOFDAY, 0), SECCOMP_RET_USER_NOTIF);
        assert_eq!(run(&p, x86, SYS_TIME, 0), SECCOMP_RET_USER_NOTIF);
        for nr in [0, 1, 59, 202, 229, 230, 435] {
            assert_eq!(run(&p, x86, nr, 0), SECCOMP_RET_ALLOW, "syscall {nr}");
        }
        // Another architecture's numbers mean other calls.
        assert_eq!(run(&p, 0x4000_0003, SYS_CLOCK_GETTIME, 0), SECCOMP_RET_ALLOW);
    }
}
