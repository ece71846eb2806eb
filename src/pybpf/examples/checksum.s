# RFC 1071 Internet checksum of the input memory: an IPv4 header whose
# checksum field is zero (checksum.mem).  Expected result: 0xb861.
# Calling convention: r1 = address of the input, r2 = its length.
    mov %r0, 0              # running 32-bit sum
    mov %r4, %r1
    add %r4, %r2            # r4 = end of input
    stxdw [%r10-8], %r2     # keep the length on the stack
words:
    mov %r5, %r1
    add %r5, 2
    jgt %r5, %r4, tail      # fewer than two bytes left
    ldxh %r3, [%r1+0]
    be16 %r3                # network byte order
    add %r0, %r3
    add %r1, 2
    ja words
tail:
    jge %r1, %r4, fold
    ldxb %r3, [%r1+0]       # odd length: pad the last byte with zero
    lsh %r3, 8
    add %r0, %r3
fold:
    mov %r3, %r0
    rsh %r3, 16
    jeq %r3, 0, done
    and %r0, 0xffff         # fold the carries back in
    add %r0, %r3
    ja fold
done:
    xor %r0, 0xffff
    ldxdw %r2, [%r10-8]
    exit
