/* nested64.S with an L2 that spins forever without exits L1 intercepts:
 * the VMM is stopped while L2 runs, for the debugfs vmcb12/vmcb02 dumps. */
	.code64
	.set	L2_SPIN, 1
	.include "nested64.S"
