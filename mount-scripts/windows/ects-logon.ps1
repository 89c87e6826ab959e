<#
.SYNOPSIS
    Logon script: mounts the signed-in student's ects drive as B:.

.DESCRIPTION
    Started hidden by ects-logon.vbs (see there for the GPO setting). It
      1. checks that ects.exe and WinFsp are installed,
      2. finds the student's ects password (asks once, in a Windows dialog, if none
         is stored yet) in a file only that student can read,
      3. starts "ects mount B:" hidden, as a network drive \\ects\<user>, and
      4. waits until B:\ is there; if the drive could not start, tells the student
         why in a message box and writes the details to %LOCALAPPDATA%\ects\drive.log.

    Lab-wide settings come from (system or GPO) environment variables, so this file
    needs no editing:
      ECTS_SERVER         https://ects.school.lan:8080  (required)
      ECTS_CA_FILE        C:\ProgramData\ects\ca.pem    (a school CA or self-signed cert)
      ECTS_PASSWORD_FILE  where the student's password is kept
                          (default %APPDATA%\ects\password.txt, roams with the profile)
    The ects user name is the Windows user name (%USERNAME%). Names ects refuses
    (anything but A-Z a-z 0-9 . _ -) need an ects name of their own: set ECTS_USER.

    The drive's local folder and upload queue live in %LOCALAPPDATA%\ects\<server>_<user>
    (ECTS_CACHE overrides it); the WinFsp launcher and ects-logoff.ps1 find the same one.
    ects-logoff.ps1 waits for that queue to empty before the session ends.
#>
param(
    [string]$Server = $env:ECTS_SERVER,
    [string]$Drive = 'B:',
    [string]$Ects = (Join-Path $env:ProgramFiles 'ects\ects.exe'),
    [int]$MountTimeoutSeconds = 60
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

$StateDir = Join-Path $env:LOCALAPPDATA 'ects'
$Log = Join-Path $StateDir 'drive.log'
$User = if ($env:ECTS_USER) { $env:ECTS_USER } else { $env:USERNAME }
$PasswordFile = if ($env:ECTS_PASSWORD_FILE) { $env:ECTS_PASSWORD_FILE } else { Join-Path $env:APPDATA 'ects\password.txt' }

function Show-Problem([string]$Text) {
    # A message box works from a hidden script; a console message would be unseen.
    Add-Type -AssemblyName System.Windows.Forms
    [void][System.Windows.Forms.MessageBox]::Show($Text, 'B: drive (ects)', 'OK', 'Warning')
}

# Windows PowerShell 5.1 passes an -ArgumentList array unquoted: quote each part
# so that paths with spaces (C:\Users\Anna Maria\...) stay one argument.
function Join-Arguments([string[]]$Parts) {
    ($Parts | ForEach-Object { '"' + ($_ -replace '"', '\"') + '"' }) -join ' '
}

# Writes the password to a new file readable only by this user (and SYSTEM, which
# can read everything anyway): inheritance off, one rule for the user's own SID.
function Save-Password([string]$Path, [string]$Password) {
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Path) | Out-Null
    [System.IO.File]::WriteAllText($Path, '')
    $me = [System.Security.Principal.WindowsIdentity]::GetCurrent().User
    $acl = New-Object System.Security.AccessControl.FileSecurity
    $acl.SetAccessRuleProtection($true, $false)
    $acl.AddAccessRule((New-Object System.Security.AccessControl.FileSystemAccessRule($me, 'FullControl', 'Allow')))
    Set-Acl -Path $Path -AclObject $acl
    # UTF-8 without a byte-order mark: ects reads the first line as the password.
    [System.IO.File]::WriteAllText($Path, $Password, (New-Object System.Text.UTF8Encoding($false)))
}

New-Item -ItemType Directory -Force -Path $StateDir | Out-Null

if (-not $Server) {
    Show-Problem "The B: drive is not set up on this PC (ECTS_SERVER is not set). Please tell the lab admin."
    exit 1
}
if (-not (Test-Path -LiteralPath $Ects)) {
    Show-Problem "The B: drive is not installed on this PC ($Ects is missing). Please tell the lab admin."
    exit 1
}
# WinFsp registers its install folder in the 32-bit registry view.
$winfsp = Get-ItemProperty -Path 'HKLM:\SOFTWARE\WOW6432Node\WinFsp' -Name InstallDir -ErrorAction SilentlyContinue
if (-not $winfsp) {
    Show-Problem "The B: drive needs WinFsp, which is not installed on this PC. Please tell the lab admin (https://winfsp.dev)."
    exit 1
}
if (Test-Path -LiteralPath "$Drive\") {
    exit 0   # already there: the script ran twice, or a drive map made it
}

if (-not (Test-Path -LiteralPath $PasswordFile)) {
    $cred = Get-Credential -UserName $User -Message 'Your ects password, for the B: drive. You are asked only once.'
    if (-not $cred) { exit 1 }
    Save-Password $PasswordFile $cred.GetNetworkCredential().Password
}

$arguments = Join-Arguments @(
    'mount', $Drive,
    '--server', $Server,
    '--user', $User,
    '--password-file', $PasswordFile,
    '--volume-prefix', "\ects\$User"
)
Add-Content -LiteralPath $Log -Value "=== $(Get-Date -Format s) logon: ects $arguments"
# ects.exe is a console program: -WindowStyle Hidden keeps its window hidden too.
$drive = Start-Process -FilePath $Ects -ArgumentList $arguments -WindowStyle Hidden -PassThru `
    -RedirectStandardError "$Log.err" -RedirectStandardOutput "$Log.out"

$deadline = (Get-Date).AddSeconds($MountTimeoutSeconds)
while (-not (Test-Path -LiteralPath "$Drive\")) {
    if ($drive.HasExited -or (Get-Date) -gt $deadline) {
        $why = ''
        if (Test-Path -LiteralPath "$Log.err") {
            $why = (Get-Content -LiteralPath "$Log.err" -Tail 5) -join "`n"
            Add-Content -LiteralPath $Log -Value $why
        }
        # Exit code 77: the server refused the user name or password (nothing mounted).
        if (($drive.HasExited -and $drive.ExitCode -eq 77) -or $why -match 'wrong user name or password') {
            # A wrong stored password: forget it, so the next logon asks again.
            Remove-Item -LiteralPath $PasswordFile -Force -ErrorAction SilentlyContinue
            Show-Problem "The B: drive could not sign in: the ects password was not accepted. Log off and on again to enter it once more.`n`n$why"
        } else {
            Show-Problem "The B: drive did not start. Your files are not lost; please tell the lab admin.`n`n$why"
        }
        exit 1
    }
    Start-Sleep -Milliseconds 500
}
exit 0
