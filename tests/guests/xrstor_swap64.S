/* xrstor_race64.S with the roles swapped: vCPU 1 exits, vCPU 0 restores
 * (with --pin-vcpus the exiter runs on CPU 1, the restorer on CPU 0). */
	.code64
	.set	SWAP, 1
	.include "xrstor_race64.S"
