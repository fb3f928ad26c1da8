// The agent's process runtime is Linux-only (Xvnc, process groups, /proc); so are its tests.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
