# shellcheck shell=bash
# Sourced by scripts/windows-check and scripts/release-windows: prepares (once) and
# enters an MSVC-style cross environment for x86_64-pc-windows-msvc on Debian 12.
#
#   clang-cl / lld-link / llvm-lib  stand in for cl.exe / link.exe / lib.exe;
#   mingw-w64's headers and import libraries stand in for the Windows SDK;
#   msvcrt_stub.c supplies the static parts of the C runtime;
#   wine64 runs the test executables (cargo's target runner).
#
# The tools live in $ECTS_WINCROSS (default target/wincross); a stamp file makes a
# second run take no time. Usage: source scripts/windows/cross-env.sh; wincross_setup
WINCROSS_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WINCROSS_TARGET=x86_64-pc-windows-msvc
WINCROSS_MINGW=/usr/x86_64-w64-mingw32

wincross_packages() {
  # shellcheck source=scripts/prereqs.sh
  source "$WINCROSS_SRC/../prereqs.sh"
  ensure_packages clang:clang ld.lld:lld \
    x86_64-w64-mingw32-gcc:gcc-mingw-w64-x86-64 /usr/lib/wine/wine64:wine64
  # The LLVM that `clang` belongs to (14 on Debian 12), with its lld-link and llvm-lib.
  WINCROSS_LLVM=$(dirname "$(readlink -f "$(command -v clang)")")
  # bindgen (winfsp-sys) loads libclang at build time.
  if ! compgen -G "$WINCROSS_LLVM/../lib/libclang.so*" >/dev/null; then
    ensure_packages "$WINCROSS_LLVM/../lib/libclang.so:libclang-dev"
  fi
  if ! rustup target list --installed | grep -qx "$WINCROSS_TARGET"; then
    rustup target add "$WINCROSS_TARGET"
  fi
}

wincross_setup() {
  local dir=${ECTS_WINCROSS:-$PWD/target/wincross}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  wincross_packages
  local stamp
  stamp="$dir/ready-$(cat "$WINCROSS_SRC"/*.c "$WINCROSS_SRC/cross-env.sh" | sha256sum | cut -c1-16)"
  if [ ! -e "$stamp" ]; then
    echo "windows-check: preparing the cross tools in $dir" >&2
    rm -rf "${dir:?}/bin" "${dir:?}/lib" "${dir:?}/obj" "${dir:?}"/ready-*
    mkdir -p "$dir/bin" "$dir/lib" "$dir/obj"
    local tool
    ln -s "$WINCROSS_LLVM/clang" "$dir/bin/clang-cl"  # clang picks MSVC mode by its name
    for tool in lld-link llvm-lib; do ln -s "$WINCROSS_LLVM/$tool" "$dir/bin/$tool"; done
    # MSVC names for mingw-w64's import libraries: libkernel32.a -> kernel32.lib.
    local a base
    for a in "$WINCROSS_MINGW"/lib/lib*.a; do
      base=$(basename "$a" .a)
      ln -sf "$a" "$dir/lib/${base#lib}.lib"
    done
    ln -sf "$WINCROSS_MINGW/lib/libucrt.a" "$dir/lib/msvcrt.lib"  # MSVC links the UCRT
    ln -sf "$WINCROSS_MINGW/lib/libmoldname.a" "$dir/lib/oldnames.lib"
    # delayimp.lib (delay-loading WinFsp): mingw-w64 keeps __delayLoadHelper2 in libmingwex.
    rm -f "$dir/lib/delayimp.lib"
    (cd "$dir/obj" && x86_64-w64-mingw32-ar x "$WINCROSS_MINGW/lib/libmingwex.a" lib64_libmingwex_a-delayimp.o)
    "$dir/bin/llvm-lib" /nologo "/out:$dir/lib/delayimp.lib" "$dir/obj/lib64_libmingwex_a-delayimp.o"
    # "--" before the source: clang-cl would read an absolute path (/work/...) as an option.
    "$dir/bin/clang-cl" /nologo /c /O1 /GS- /Zl "-Fo$dir/obj/msvcrt_stub.obj" -- "$WINCROSS_SRC/msvcrt_stub.c"
    "$dir/bin/llvm-lib" /nologo "/out:$dir/lib/msvcrt_stub.lib" "$dir/obj/msvcrt_stub.obj"
    # A Wine prefix of our own, with the bcryptprimitives.dll Wine 8.0 lacks.
    WINEPREFIX="$dir/wineprefix" WINEDEBUG=-all /usr/lib/wine/wine64 wineboot -i >/dev/null 2>&1 || true
    x86_64-w64-mingw32-gcc -O2 -shared -o "$dir/wineprefix/drive_c/windows/system32/bcryptprimitives.dll" \
      "$WINCROSS_SRC/wine_process_prng.c" -ladvapi32
    touch "$stamp"
  fi
  export PATH="$dir/bin:$PATH"
  export CC_x86_64_pc_windows_msvc=clang-cl AR_x86_64_pc_windows_msvc=llvm-lib
  export CFLAGS_x86_64_pc_windows_msvc="/imsvc$WINCROSS_MINGW/include /clang:-fgnuc-version=4.2.1"
  export BINDGEN_EXTRA_CLANG_ARGS_x86_64_pc_windows_msvc="-isystem $WINCROSS_MINGW/include -fgnuc-version=4.2.1 -D__MINGW32__ -D_ReadWriteBarrier=_ReadWriteBarrier"
  export CARGO_TARGET_X86_64_PC_WINDOWS_MSVC_LINKER=lld-link
  export CARGO_TARGET_X86_64_PC_WINDOWS_MSVC_RUSTFLAGS="-Clink-arg=/LIBPATH:$dir/lib -Clink-arg=$dir/lib/msvcrt_stub.lib"
  export CARGO_TARGET_X86_64_PC_WINDOWS_MSVC_RUNNER=/usr/lib/wine/wine64
  export WINEPREFIX="$dir/wineprefix" WINEDEBUG=-all
  export WINCROSS_DIR=$dir
}
