<#
.SYNOPSIS
    Logoff script: waits (bounded) until the B: drive has uploaded every saved version.

.DESCRIPTION
    GPO: User Configuration > Policies > Windows Settings > Scripts > Logoff > Add
         (PowerShell Scripts tab): ects-logoff.ps1, parameters e.g. -TimeoutSeconds 120

    Windows runs logoff scripts while the session, and so the drive, is still alive:
    the drive keeps uploading while this waits. Whatever is still queued after the
    timeout stays in the drive's cache folder (%LOCALAPPDATA%\ects\...) and is sent the next time this
    student logs on to this PC: nothing is lost, it just arrives later.
    Exit codes of "ects status --wait": 0 all sent, 1 some refused by the server
    (shown in B:\.ects-status.txt), 3 timed out. This script always exits 0 so a
    slow network never blocks a logoff for longer than the timeout.

    Keep -TimeoutSeconds below the GPO "Maximum wait time for Group Policy scripts"
    (default 600 s), or Windows stops the script first.
#>
param(
    [int]$TimeoutSeconds = 120,
    [string]$Server = $env:ECTS_SERVER,
    [string]$Ects = (Join-Path $env:ProgramFiles 'ects\ects.exe')
)

Set-StrictMode -Version 2.0
$StateDir = Join-Path $env:LOCALAPPDATA 'ects'
$User = if ($env:ECTS_USER) { $env:ECTS_USER } else { $env:USERNAME }
$Log = Join-Path $StateDir 'drive.log'

if (-not (Test-Path -LiteralPath $Ects) -or -not $Server) {
    exit 0   # no drive on this PC: nothing to wait for
}
# Finds the drive's spool from server + user (or ECTS_CACHE); no spool = nothing to wait for.
$out = & $Ects status --wait --timeout $TimeoutSeconds --server $Server --user $User 2>&1
Add-Content -LiteralPath $Log -Value "=== $(Get-Date -Format s) logoff (exit $LASTEXITCODE): $($out -join ' ')"
exit 0
