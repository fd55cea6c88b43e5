package bench

import "syscall"

// childProcAttr has Linux kill the server child when the bench dies.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
