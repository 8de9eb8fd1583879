# Z = X + Y, the paper's first example (ISCA20 Fig. 6): two MEM slices stream their operands towards
# the VXM from both sides, one ALU adds, and the sum flows east into a third slice.
# tsp-v1 floorplan: MEM_W0 sits at position 45, VXM at 46, MEM_E0 at 47, MEM_E1 at 48.
.chip tsp-v1
.tensor x int8 4 at MEM_W0:0 = random(1)
.tensor y int8 4 at MEM_E0:0 = random(2)
.tensor z int8 4 at MEM_E1:0 output

.queue MEM_W0
    READ 0, e0              # x row 0 onto eastward stream 0: at MEM_W0 in cycle 2, at the VXM in cycle 3
    REPEAT 3, 1             # rows 1..3 in cycles 1..3
.queue MEM_E0
    READ 0, w0              # y row 0 onto westward stream 0, meeting x at the VXM in cycle 3
    REPEAT 3, 1
.queue VXM.0
    @3 ADD int8, e0, w0, e1  # integers wrap (ADD.SAT saturates); the sum is on e1 at the VXM in cycle 5
    REPEAT 3, 1
.queue MEM_E1
    @7 WRITE 0, e1          # two hops east of the VXM: cycle 7
    REPEAT 3, 1
