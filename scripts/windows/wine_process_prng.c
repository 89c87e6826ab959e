/* bcryptprimitives.dll for Wine 8.0, which lacks it. Rust's std (1.78 and later)
   takes its random numbers (HashMap keys) from ProcessPrng there; without this DLL
   no Rust program starts under Wine. Forwards to RtlGenRandom (advapi32's
   SystemFunction036). Installed only into the Wine prefix of scripts/windows-check. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
