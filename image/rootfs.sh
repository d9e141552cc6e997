#!/bin/sh
# Lay out the runtime image's whole file tree in OUT: the binary, exactly the shared libraries it
# loads (as ldd resolves them, at the paths the loader looks in), their Debian copyright files and
# dpkg records (var/lib/dpkg/status.d/, etc/os-release: what image scanners read), a passwd/group
# naming uid 65532, and a world-writable /tmp (sticky) for TMPDIR.
#   image/rootfs.sh BINARY OUT
# Used by the Dockerfile's build stage and, for BINARY_FROM=context, on the build machine.
set -eu

if [ "$#" -ne 2 ]; then
  echo "usage: $0 BINARY OUT" >&2
  exit 2
fi
bin=$1
out=$2
if [ ! -x "$bin" ]; then
  echo "rootfs: $bin is not an executable file" >&2
  exit 1
fi
if [ -e "$out" ]; then
  echo "rootfs: $out already exists; give a new directory" >&2
  exit 1
fi

install -D -m 0755 "$bin" "$out/usr/local/bin/carto-wi-webhook"

# "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)":
# the resolved path is the first field starting with "/". linux-vdso has none (the kernel's).
libs=$(ldd "$bin" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) { print $i; break } }')
if [ -z "$libs" ]; then
  echo "rootfs: ldd found no shared libraries in $bin (a static binary needs none: fine)" >&2
fi
for lib in $libs; do
  # -L: the file itself, not the symlink (libc.so.6 may link to libc-2.36.so).
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
  chmod 0755 "$out$lib"
  # Ship the license of each library with it (LGPL glibc, GCC runtime exception libgcc), and its
  # package's dpkg record in status.d/ (one file per package, as distroless images do), where
  # trivy and grype find the Debian packages of an image that has no dpkg database.
  if command -v dpkg >/dev/null 2>&1; then
    # dpkg knows the path ldd prints (or, for a symlink, the file it points to).
    pkg=$( (dpkg -S "$lib" || dpkg -S "$(readlink -f "$lib")") 2>/dev/null | head -n1 | cut -d: -f1) || pkg=""
    if [ -n "$pkg" ] && [ -f "/usr/share/doc/$pkg/copyright" ]; then
      install -D -m 0644 "/usr/share/doc/$pkg/copyright" "$out/usr/share/doc/$pkg/copyright"
    fi
    if [ -n "$pkg" ]; then
      mkdir -p "$out/var/lib/dpkg/status.d"
      dpkg -s "$pkg" >"$out/var/lib/dpkg/status.d/$pkg"
      chmod 0644 "$out/var/lib/dpkg/status.d/$pkg"
    fi
  fi
done

# The distribution those packages come from, for the scanners to pick its advisories.
if [ -f /etc/os-release ]; then
  mkdir -p "$out/etc"
  cp -L /etc/os-release "$out/etc/os-release"
  chmod 0644 "$out/etc/os-release"
fi

mkdir -p "$out/etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$out/etc/group"
chmod 0644 "$out/etc/passwd" "$out/etc/group"
mkdir -m 1777 "$out/tmp"
