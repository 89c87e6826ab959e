' ects logon script launcher: runs ects-logon.ps1 with no window at all.
'
' A PowerShell script started directly from a GPO logon script flashes a console
' window (even with -WindowStyle Hidden). wscript.exe has no console, and Run with
' window style 0 starts PowerShell hidden from its first moment.
'
' GPO: User Configuration > Policies > Windows Settings > Scripts (Logon/Logoff)
'   > Logon > Add: Script name  wscript.exe
'                  Parameters   "\\school.lan\NETLOGON\ects\ects-logon.vbs"
' Keep ects-logon.ps1 in the same folder as this file.

Option Explicit
Dim shell, fso, here, cmd
Set shell = CreateObject("WScript.Shell")
Set fso = CreateObject("Scripting.FileSystemObject")
here = fso.GetParentFolderName(WScript.ScriptFullName)
cmd = "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass " & _
      "-WindowStyle Hidden -File """ & here & "\ects-logon.ps1"""
' 0 = hidden window; False = do not wait (logon goes on while the drive starts).
shell.Run cmd, 0, False
