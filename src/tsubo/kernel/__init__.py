"""The only package that touches the kernel: syscalls, mounts, namespaces, cgroups, procfs."""
