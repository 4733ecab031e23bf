#!/usr/bin/env bash
# Assembles the files the dagctl image adds to its distroless base: the dagctl binary, git with its HTTPS
# helper and ssh (for git-synced DAGs), the shared libraries they need (found with ldd), the users of the
# distroless base (root, nonroot 65532, nobody) and a data dir owned by nonroot.
#
#   deploy/image/rootfs.sh DAGCTL_BINARY OUT_DIR
#
# The Dockerfile runs it in its build stage (Debian 12, as the distroless cc-debian12 base) and copies OUT_DIR
# over the base; dagctl/tests/image.rs runs it on this machine and runs the result in a chroot. Every library
# is copied from the build stage, the C library and loader included, so the set is consistent even where the
# base's own copies are a patch release apart.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 DAGCTL_BINARY OUT_DIR" >&2
  exit 2
fi
binary=$1
out=$2
[ -x "$binary" ] || { echo "rootfs: $binary is not an executable" >&2; exit 1; }
for tool in ldd git ssh; do
  command -v "$tool" >/dev/null || { echo "rootfs: $tool is missing (apt-get install git openssh-client)" >&2; exit 1; }
done
git_core=$(git --exec-path)

mkdir -p "$out/usr/local/bin" "$out/usr/bin" "$out$git_core" "$out/etc" "$out/var/lib/dagctl" "$out/tmp"
install -m 0755 "$binary" "$out/usr/local/bin/dagctl"
# git runs its builtins through the copy in its exec path; fetch over https through git-remote-https.
programs=(/usr/bin/git /usr/bin/ssh "$git_core/git" "$git_core/git-remote-http")
for program in "${programs[@]}"; do
  install -m 0755 "$program" "$out$program"
done
ln -sf git-remote-http "$out$git_core/git-remote-https"
# git runs GIT_SSH_COMMAND (the ssh options of git-synced DAGs) through /bin/sh: dash, the only shell.
mkdir -p "$out/bin"
install -m 0755 "$(readlink -f /bin/sh)" "$out/bin/sh"
if [ -d /usr/share/git-core/templates ]; then
  mkdir -p "$out/usr/share/git-core"
  cp -r /usr/share/git-core/templates "$out/usr/share/git-core/"
fi

# Shared libraries, by the path the loader resolves (symbolic links followed, so the file itself is copied).
libraries() {
  ldd "$1" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }'
}
for program in "$out/usr/local/bin/dagctl" "$out/bin/sh" "${programs[@]}"; do
  while read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
  done < <(libraries "$program")
done
# The loader's usual path (/lib64 is a link on Debian's merged /usr).
if [ -e /lib64/ld-linux-x86-64.so.2 ] && [ ! -e "$out/lib64/ld-linux-x86-64.so.2" ]; then
  mkdir -p "$out/lib64"
  cp -L /lib64/ld-linux-x86-64.so.2 "$out/lib64/"
fi

# The base's users, so ssh and git know who uid 65532 is.
cat > "$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$out/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$out/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/"
fi
chmod 1777 "$out/tmp"
if [ "$(id -u)" = 0 ]; then
  chown 65532:65532 "$out/var/lib/dagctl"
fi
echo "rootfs: $(du -sh "$out" | cut -f1) in $out"
