# Fibonacci in LLVM assembler syntax: r0 = fib(n), where n is the first byte
# of the input memory (fibonacci.mem holds 90: fib(90) = 2880067194370816120,
# the largest that fits in 63 bits).
	r2 = *(u8 *)(r1 + 0)
	r0 = 0
	r3 = 1
	if r2 == 0 goto done
loop:
	r4 = r0
	r4 += r3
	r0 = r3
	r3 = r4
	r2 += -1
	if r2 != 0 goto loop
done:
	exit
