# Z[8, 320] = X[8, 320] . W[320, 320]^T in int8 with int32 results, on MXM plane 0 (west edge).
# Weights: eight slices MEM_W0..MEM_W7 hold 40 rows each (W row 8j+i is row j of slice MEM_Wi); each
# reads one row per cycle onto westward stream i, issues staggered by its distance so that all eight
# rows reach the plane together; LW loads 8 rows a cycle for 40 cycles, IW installs them.
# tsp-v1 positions: MXM_W 0, MEM_Wk at 45-k.
.chip tsp-v1
.tensor w0 int8 40 at MEM_W0:0 = random(10)
.tensor w1 int8 40 at MEM_W1:0 = random(11)
.tensor w2 int8 40 at MEM_W2:0 = random(12)
.tensor w3 int8 40 at MEM_W3:0 = random(13)
.tensor w4 int8 40 at MEM_W4:0 = random(14)
.tensor w5 int8 40 at MEM_W5:0 = random(15)
.tensor w6 int8 40 at MEM_W6:0 = random(16)
.tensor w7 int8 40 at MEM_W7:0 = random(17)
.tensor x int8 8 at MEM_W8:0 = random(1)
.tensor z int32 8 at MEM_W43,MEM_W42,MEM_W41,MEM_W40:0 output

.queue MEM_W0
    @0 READ 0, w0           # reaches MXM_W (45 hops) in cycle 0 + 2 + 45 = 47
    REPEAT 39, 1
.queue MEM_W1
    @1 READ 0, w1           # one hop nearer, one cycle later: also cycle 47
    REPEAT 39, 1
.queue MEM_W2
    @2 READ 0, w2
    REPEAT 39, 1
.queue MEM_W3
    @3 READ 0, w3
    REPEAT 39, 1
.queue MEM_W4
    @4 READ 0, w4
    REPEAT 39, 1
.queue MEM_W5
    @5 READ 0, w5
    REPEAT 39, 1
.queue MEM_W6
    @6 READ 0, w6
    REPEAT 39, 1
.queue MEM_W7
    @7 READ 0, w7
    REPEAT 39, 1
.queue MXM0.w
    @47 LW w0, 8, 0         # rows 0..7 from streams w0..w7; each repeat loads the next 8 rows
    REPEAT 39, 1            # last rows in cycle 86, committed in 87
    IW int8                 # cycle 87; the weights are in the array from cycle 107
.queue MEM_W8
    @68 READ 0, w8          # x row 0 reaches the plane (37 hops) in cycle 68 + 2 + 37 = 107
    REPEAT 7, 1
.queue MXM0.a
    @107 ACC int8, w8, e0, 0, set   # int32 result on e0..e3 at MXM_W in cycle 129
    REPEAT 7, 1
.queue MEM_W43
    @131 WRITE 0, e0        # byte 0 of each int32, two hops east
    REPEAT 7, 1
.queue MEM_W42
    @132 WRITE 0, e1
    REPEAT 7, 1
.queue MEM_W41
    @133 WRITE 0, e2
    REPEAT 7, 1
.queue MEM_W40
    @134 WRITE 0, e3        # byte 3
    REPEAT 7, 1
