# An embedding-style lookup: every lane reads its own row of a table, the address taken per lane from
# an int16 stream pair (ISCA20 Table I: Gather s, map). The addresses are lane i -> row i mod 127.
# tsp-v1 positions: MEM_E0 47, MEM_E1 48, MEM_E2 49.
.chip tsp-v1
.tensor addrs int16 1 at MEM_E0,MEM_E1:0 = iota
.tensor table int8 128 at MEM_E2:0 = random(7)
.tensor out int8 1 at MEM_E0:1 output

.queue MEM_E0
    @4 READ 0, e0           # address low bytes reach MEM_E2 (2 hops) in cycle 4 + 2 + 2 = 8
    @13 WRITE 1, w2         # the gathered row comes back west: cycle 11 at MEM_E2, 13 here
.queue MEM_E1
    @5 READ 0, e1           # high bytes, one hop nearer
.queue MEM_E2
    @8 GATHER e0, w2        # out[lane] = table[addrs[lane]][lane], on w2 in cycle 11
