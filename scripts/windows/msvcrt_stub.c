/* The static start-up pieces of Microsoft's C runtime that a Rust executable for
   x86_64-pc-windows-msvc links against, written for a build on Linux where the real
   vcruntime.lib / msvcrt.lib are not available. mingw-w64's import libraries supply
   the DLL side (ucrtbase, kernel32, ...); this file supplies the rest.
   Used only by scripts/windows-check; real Windows builds use the Visual C++ tools. */
#include <stddef.h>

typedef unsigned long long u64;
typedef void(__stdcall *tls_callback)(void *, unsigned long, void *);

/* Marks "this image uses floating point" for the linker, as MSVC's CRT does. */
int _fltused = 0x9875;

/* Thread-local storage directory: Rust's thread_local! needs the loader to set up
   a TLS block, which it does only when the image has a _tls_used directory. */
#pragma section(".tls", read, write)
#pragma section(".tls$ZZZ", read, write)
#pragma section(".CRT$XLA", read)
#pragma section(".CRT$XLZ", read)
__declspec(allocate(".tls")) char _tls_start = 0;
__declspec(allocate(".tls$ZZZ")) char _tls_end = 0;
__declspec(allocate(".CRT$XLA")) tls_callback __xl_a = 0;
__declspec(allocate(".CRT$XLZ")) tls_callback __xl_z = 0;
unsigned long _tls_index = 0;
struct image_tls_directory {
    u64 data_start, data_end, index_address, callbacks;
    unsigned long zero_fill, characteristics;
};
const struct image_tls_directory _tls_used = {
    (u64)&_tls_start, (u64)&_tls_end, (u64)&_tls_index, (u64)(&__xl_a + 1), 0, 0};

/* Entry point: fetch argc/argv from the runtime DLL and run Rust's main. */
typedef struct { int new_mode; } startup_info;
int __getmainargs(int *, char ***, char ***, int, startup_info *);
void exit(int);
int main(int, char **);
int mainCRTStartup(void) {
    int argc;
    char **argv, **envp;
    startup_info info = {0};
    __getmainargs(&argc, &argv, &envp, 0, &info);
    exit(main(argc, argv));
    return 0;
}

/* __chkstk touches each 4 KiB page of a large stack frame in order (size in RAX),
   so the guard page grows the stack; it must preserve every register. */
__asm__(".globl __chkstk\n"
        "__chkstk:\n"
        "  push %rcx\n"
        "  push %rax\n"
        "  lea 24(%rsp), %rcx\n"
        "  cmp $0x1000, %rax\n"
        "  jb 2f\n"
        "1:\n"
        "  sub $0x1000, %rcx\n"
        "  test %rcx, (%rcx)\n"
        "  sub $0x1000, %rax\n"
        "  cmp $0x1000, %rax\n"
        "  ja 1b\n"
        "2:\n"
        "  sub %rax, %rcx\n"
        "  test %rcx, (%rcx)\n"
        "  pop %rax\n"
        "  pop %rcx\n"
        "  ret\n"
        /* Rust's panic type descriptors take the address of type_info's vtable only. */
        ".data\n"
        ".globl \"??_7type_info@@6B@\"\n"
        "\"??_7type_info@@6B@\":\n"
        "  .quad 0, 0\n"
        ".text\n");

/* mingw-w64's libmingwex expects this; we build an executable. */
const char __mingw_module_is_dll = 0;

/* Some math functions exist in mingw's import libraries only as __imp_NAME pointers;
   give the plain names a jump through that pointer. */
#define THUNK(name) __asm__(".text\n.globl " #name "\n" #name ":\n  jmp *__imp_" #name "(%rip)\n");
THUNK(floor) THUNK(ceil) THUNK(fmod) THUNK(pow) THUNK(exp) THUNK(log) THUNK(sqrt)
THUNK(fabs) THUNK(floorf) THUNK(ceilf) THUNK(fmodf) THUNK(powf) THUNK(sqrtf)
THUNK(sin) THUNK(cos) THUNK(atan2) THUNK(ldexp) THUNK(modf)

/* Stack-protector cookie for C code compiled with /GS (ring's C files are). */
unsigned long long __security_cookie = 0x00002B992DDFA232ULL;
void __security_check_cookie(unsigned long long cookie) {
    if (cookie != __security_cookie)
        __fastfail(2); /* FAST_FAIL_STACK_COOKIE_CHECK_FAILURE */
}

/* Hooks read by mingw-w64's __delayLoadHelper2, which stands in for delayimp.lib
   (WinFsp's DLL is delay-loaded, see build.rs). No hooks: failures raise. */
void *__pfnDliFailureHook2 = 0;
void *__pfnDliNotifyHook2 = 0;
#pragma comment(linker, "/alternatename:__image_base__=__ImageBase")
