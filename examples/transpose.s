# Transpose a 16x16 block of bytes in every superlane (ISCA20 Table I: Transpose sg16).
# Sixteen slices MEM_W0..MEM_W15 each hold one row; staggered by distance, the rows reach SXM_W
# together on westward streams w0..w15 (cycle 46). TRANSPOSE swaps stream and lane within each group
# of 16 lanes and sends the result east on e0..e15; slice MEM_W(16+i) writes stream e_i.
# tsp-v1 positions: SXM_W 1, MEM_Wk at 45-k.
.chip tsp-v1
.tensor x0 int8 1 at MEM_W0:0 = random(20)
.tensor x1 int8 1 at MEM_W1:0 = random(21)
.tensor x2 int8 1 at MEM_W2:0 = random(22)
.tensor x3 int8 1 at MEM_W3:0 = random(23)
.tensor x4 int8 1 at MEM_W4:0 = random(24)
.tensor x5 int8 1 at MEM_W5:0 = random(25)
.tensor x6 int8 1 at MEM_W6:0 = random(26)
.tensor x7 int8 1 at MEM_W7:0 = random(27)
.tensor x8 int8 1 at MEM_W8:0 = random(28)
.tensor x9 int8 1 at MEM_W9:0 = random(29)
.tensor x10 int8 1 at MEM_W10:0 = random(30)
.tensor x11 int8 1 at MEM_W11:0 = random(31)
.tensor x12 int8 1 at MEM_W12:0 = random(32)
.tensor x13 int8 1 at MEM_W13:0 = random(33)
.tensor x14 int8 1 at MEM_W14:0 = random(34)
.tensor x15 int8 1 at MEM_W15:0 = random(35)
.tensor y0 int8 1 at MEM_W16:0 output
.tensor y1 int8 1 at MEM_W17:0 output
.tensor y2 int8 1 at MEM_W18:0 output
.tensor y3 int8 1 at MEM_W19:0 output
.tensor y4 int8 1 at MEM_W20:0 output
.tensor y5 int8 1 at MEM_W21:0 output
.tensor y6 int8 1 at MEM_W22:0 output
.tensor y7 int8 1 at MEM_W23:0 output
.tensor y8 int8 1 at MEM_W24:0 output
.tensor y9 int8 1 at MEM_W25:0 output
.tensor y10 int8 1 at MEM_W26:0 output
.tensor y11 int8 1 at MEM_W27:0 output
.tensor y12 int8 1 at MEM_W28:0 output
.tensor y13 int8 1 at MEM_W29:0 output
.tensor y14 int8 1 at MEM_W30:0 output
.tensor y15 int8 1 at MEM_W31:0 output

.queue MEM_W0
    @0 READ 0, w0
.queue MEM_W1
    @1 READ 0, w1
.queue MEM_W2
    @2 READ 0, w2
.queue MEM_W3
    @3 READ 0, w3
.queue MEM_W4
    @4 READ 0, w4
.queue MEM_W5
    @5 READ 0, w5
.queue MEM_W6
    @6 READ 0, w6
.queue MEM_W7
    @7 READ 0, w7
.queue MEM_W8
    @8 READ 0, w8
.queue MEM_W9
    @9 READ 0, w9
.queue MEM_W10
    @10 READ 0, w10
.queue MEM_W11
    @11 READ 0, w11
.queue MEM_W12
    @12 READ 0, w12
.queue MEM_W13
    @13 READ 0, w13
.queue MEM_W14
    @14 READ 0, w14
.queue MEM_W15
    @15 READ 0, w15
.queue SXM_W.0
    @46 TRANSPOSE w0, e0     # results on e0..e15 at SXM_W in cycle 52
.queue MEM_W16
    @80 WRITE 0, e0
.queue MEM_W17
    @79 WRITE 0, e1
.queue MEM_W18
    @78 WRITE 0, e2
.queue MEM_W19
    @77 WRITE 0, e3
.queue MEM_W20
    @76 WRITE 0, e4
.queue MEM_W21
    @75 WRITE 0, e5
.queue MEM_W22
    @74 WRITE 0, e6
.queue MEM_W23
    @73 WRITE 0, e7
.queue MEM_W24
    @72 WRITE 0, e8
.queue MEM_W25
    @71 WRITE 0, e9
.queue MEM_W26
    @70 WRITE 0, e10
.queue MEM_W27
    @69 WRITE 0, e11
.queue MEM_W28
    @68 WRITE 0, e12
.queue MEM_W29
    @67 WRITE 0, e13
.queue MEM_W30
    @66 WRITE 0, e14
.queue MEM_W31
    @65 WRITE 0, e15
