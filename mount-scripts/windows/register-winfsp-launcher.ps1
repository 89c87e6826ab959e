<#
.SYNOPSIS
    Registers ects with the WinFsp launcher, so that "net use B: \\ects\%USERNAME%",
    Explorer's "Map network drive" and GPO drive maps mount the ects drive.

.DESCRIPTION
    Run once per PC, as administrator (e.g. as a GPO computer startup script, or in
    the lab image):
        powershell -ExecutionPolicy Bypass -File register-winfsp-launcher.ps1 `
            -Server https://ects.school.lan:8080
    Undo with -Unregister.

    It writes the same registry values as WinFsp's own "fsreg.bat ects ..." (under
    HKLM\SOFTWARE\WOW6432Node\WinFsp\Services\ects), plus RunAs=".", which makes
    the launcher start ects as the user who maps the drive rather than as SYSTEM:
    the drive then keeps its files in that user's profile and uploads as that user.

    When a user maps \\ects\alice to B:, the launcher runs
        ects.exe mount B: --volume-prefix \ects\alice --server URL
    (%1 = the UNC path \ects\alice, %2 = the drive letter). ects takes the user
    name from the last part of the path, and refuses a share that is not the
    Windows account's own name unless ECTS_USER names that same user (so nobody
    mounts, and uploads to, someone else's drive). The password comes from the user's
    ECTS_PASSWORD_FILE environment variable (set it as a user variable by GPO,
    e.g. %APPDATA%\ects\password.txt; ects-logon.ps1 writes that file on first use).
    GPO drive maps: User Configuration > Preferences > Windows Settings > Drive Maps:
    Location \\ects\%USERNAME%, Drive letter B, Reconnect off.

    Unmapping (net use B: /delete, or logoff) makes the launcher send CTRL-BREAK;
    ects unmounts, uploading for up to --drain-timeout seconds first.
#>
param(
    [string]$Server = $env:ECTS_SERVER,
    [string]$Ects = (Join-Path $env:ProgramFiles 'ects\ects.exe'),
    [switch]$Unregister
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    Write-Error 'Run this as administrator: it writes to HKEY_LOCAL_MACHINE.'
}

# WinFsp keeps its settings in the 32-bit registry view, also on 64-bit Windows.
$hklm = [Microsoft.Win32.RegistryKey]::OpenBaseKey('LocalMachine', 'Registry32')
$servicesPath = 'SOFTWARE\WinFsp\Services'

if ($Unregister) {
    $hklm.DeleteSubKeyTree("$servicesPath\ects", $false)
    Write-Output 'ects is no longer registered with the WinFsp launcher.'
    exit 0
}

if (-not $hklm.OpenSubKey('SOFTWARE\WinFsp')) {
    Write-Error 'WinFsp is not installed (choco install winfsp, or https://winfsp.dev).'
}
if (-not (Test-Path -LiteralPath $Ects)) {
    Write-Error "ects.exe not found at $Ects (give its place with -Ects)."
}
if (-not $Server) {
    Write-Error 'Give the server with -Server https://... (or set ECTS_SERVER).'
}

# The launcher fills in %1 (the UNC path, \ects\alice) and %2 (the drive letter)
# and quotes each itself. It expands only %0-%9 and %A-%Z (its own variables), never
# %ENVIRONMENT% variables, so no %LOCALAPPDATA% here: ects finds the user's cache
# folder itself (%LOCALAPPDATA%\ects\..., or ECTS_CACHE if set for the user).
if ($Server -match '[%"\s]') {
    Write-Error "The server URL must not contain %, quotes or spaces: $Server"
}
$commandLine = "mount %2 --volume-prefix %1 --server $Server"

$key = $hklm.CreateSubKey("$servicesPath\ects")
$key.SetValue('Executable', $Ects, 'String')
$key.SetValue('CommandLine', $commandLine, 'String')
# Everyone (WD) may start (RP), stop (WP) and query (LC) their own ects drive.
$key.SetValue('Security', 'D:P(A;;RPWPLC;;;WD)', 'String')
$key.SetValue('JobControl', 1, 'DWord')
$key.SetValue('RunAs', '.', 'String')
$key.Close()
Write-Output "Registered: net use B: \\ects\%USERNAME% now mounts the ects drive ($Server)."
