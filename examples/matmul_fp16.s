# Z[8, 320] = X1 . W^T + X2 . W^T in fp16 with fp32 accumulation, on the plane pair (0, 1).
# fp16 uses two byte-planes in tandem (ISCA20): plane 0 loads the low bytes of W, plane 1 the high
# bytes, and IW fp16 on plane 0 installs the pair. Each fp16 ACC takes two cycles (REPEAT n, 2).
# The first pass sets accumulator slots 0..7, the second adds into them and emits fp32 rows.
.chip tsp-v1
.tensor w fp16 320 at MEM_W0,MEM_W1:0 = random(3)
.tensor x1 fp16 8 at MEM_W2,MEM_W3:0 = random(4)
.tensor x2 fp16 8 at MEM_W2,MEM_W3:8 = random(5)
.tensor z fp32 8 at MEM_W43,MEM_W42,MEM_W41,MEM_W40:0 output

.queue MEM_W0
    READ 0, w0              # low bytes of W row 0 reach MXM_W in cycle 0 + 2 + 45 = 47
    REPEAT 319, 1
.queue MEM_W1
    @1 READ 0, w1           # high bytes, one hop nearer
    REPEAT 319, 1
.queue MXM0.w
    @47 LW w0, 1, 0
    REPEAT 319, 1           # last row in cycle 366, committed in 367
    IW fp16                 # cycle 367: the fp16 weights are in the array from cycle 387
.queue MXM1.w
    @47 LW w1, 1, 0
    REPEAT 319, 1
.queue MEM_W2
    @342 READ 0, w2         # x1 row j (low bytes) reaches the plane in cycle 387 + 2j
    REPEAT 7, 2
    @358 READ 8, w2         # x2 row j in cycle 403 + 2j
    REPEAT 7, 2
.queue MEM_W3
    @343 READ 0, w3
    REPEAT 7, 2
    @359 READ 8, w3
    REPEAT 7, 2
.queue MXM0.a
    @387 ACC fp16, w2, -, 0, set    # slots 0..7 = x1 . W^T (not emitted)
    REPEAT 7, 2
    ACC fp16, w2, e0, 0, acc        # cycle 403: slots += x2 . W^T, emitted in cycle 425 + 2j
    REPEAT 7, 2
.queue MEM_W43
    @427 WRITE 0, e0
    REPEAT 7, 2
.queue MEM_W42
    @428 WRITE 0, e1
    REPEAT 7, 2
.queue MEM_W41
    @429 WRITE 0, e2
    REPEAT 7, 2
.queue MEM_W40
    @430 WRITE 0, e3
    REPEAT 7, 2
