//go:build !linux

package bench

import "syscall"

// childProcAttr is empty where the system cannot tie a child's life to its
// parent's: a killed bench may leave its server child running there.
func childProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
