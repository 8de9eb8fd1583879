"""The static verifier against hand-made broken programs: the right kind, and a message naming the
instruction, the cycle and the resource. Each broken program is one change away from a sound one."""

from pathlib import Path

import numpy as np
import pytest
from chipkit import MINI, MXM_AT, OUT_ADDR, SXM_AT, VXM_AT, Kit, loopback

from openlpu.chip.asm import assemble, load
from openlpu.chip.isa import ISA
from openlpu.errors import UserError
from openlpu.sim.exact import run
from openlpu.sim.verify import VerifyError, check

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.s"))
ONES = np.ones((1, 32), np.int8)


def kinds(program) -> list[str]:
    return [v.kind for v in check(program)]


def one(program, kind: str, *words: str) -> str:
    """The program has exactly one violation, of `kind`, whose message contains every word."""
    found = check(program)
    assert [v.kind for v in found] == [kind], found
    for word in words:
        assert word in found[0].message, (word, found[0].message)
    return found[0].message


def staged(cycle_of_read: int = VXM_AT) -> Kit:
    """x arrives at the VXM on e0 in cycle VXM_AT; ALU 0 reads it in `cycle_of_read` (MOV to latch only)."""
    kit = Kit()
    kit.load("x", ONES, "int8", ["MEM_W0"], "e0", "VXM", VXM_AT)
    kit.emit("VXM.0", cycle_of_read, "MOV", "int8", "e0", None)
    return kit


# ---------------------------------------------------------------- examples, and run refusing


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_passes_the_verifier(path):
    assert check(load(path)) == []


def test_examples_exist():
    assert len(EXAMPLES) >= 5


def test_run_refuses_a_broken_program_with_a_user_error():
    program = staged(VXM_AT - 1).program()
    with pytest.raises(VerifyError) as err:
        run(program)
    assert isinstance(err.value, UserError)
    assert str(err.value) == check(program)[0].message


# ---------------------------------------------------------------- streams


def test_sound_stream_read_passes():
    assert check(staged(VXM_AT).program()) == []


def test_stream_read_one_cycle_before_its_producer_arrives():
    one(staged(VXM_AT - 1).program(), "stream-early",
        "MOV in queue VXM.0", f"cycle {VXM_AT - 1}", "stream e0", "at VXM", f"reaches it only in cycle {VXM_AT}")


def test_stream_read_one_cycle_after_the_value_passed():
    one(staged(VXM_AT + 1).program(), "stream-early", "MOV in queue VXM.0", f"cycle {VXM_AT + 1}", "stream e0")


def _overwrite(reader_at: int | None):
    """MEM_W0 puts a value on e0 (at MEM_W0 in cycle 2); MEM_E0 writes e0 on the same register line
    two hops later, in cycle 4. A VXM read in cycle 3 (between them) uses the first value."""
    kit = Kit()
    kit.emit("MEM_W0", 0, "READ", 0, "e0")
    kit.emit("MEM_E0", 2, "READ", 1, "e0")
    if reader_at is not None:
        kit.emit("VXM.0", reader_at, "MOV", "int8", "e0", None)
    return kit.program()


def test_value_overwritten_before_anything_reads_it():
    one(_overwrite(None), "stream-overwrite", "READ in queue MEM_W0 issued at cycle 0", "stream e0",
        "at MEM_E0 in cycle 4", "READ in queue MEM_E0 issued at cycle 2")


def test_value_read_before_it_is_overwritten_passes():
    assert check(_overwrite(3)) == []


def test_two_writers_on_one_stream_register_in_one_cycle():
    kit = staged()
    kit.emit("VXM.1", VXM_AT, "MOV", "int8", "e0", "e4")
    kit.emit("VXM.2", VXM_AT, "MOV", "int8", "e0", "e4")
    one(kit.program(), "stream-conflict", "stream e4", "at VXM", f"cycle {VXM_AT + 2}", "MOV in queue VXM.1",
        "MOV in queue VXM.2")


def test_two_writers_overlapping_in_one_byte_of_a_group():
    kit = staged()
    kit.emit("VXM.1", VXM_AT, "MOV", "int8", "e0", "e5")
    kit.emit("VXM.2", VXM_AT, "CAST", "int8", "int16", "e0", "e4")  # int16 on e4, e5
    one(kit.program(), "stream-conflict", "stream e5", f"cycle {VXM_AT + 2}")


@pytest.mark.parametrize("plane, edge, source, src, dst", [(0, "MXM_W", "MEM_W0", "w4", "w8"),
                                                        (2, "MXM_E", "MEM_E0", "e4", "e8")])
def test_writes_off_the_chip_edge(plane, edge, source, src, dst):
    """The MXM planes sit on the chip edges: a result sent outward leaves the chip at once."""
    kit = Kit()
    kit.emit(f"MXM{plane}.w", 0, "IW", "int8")
    at = max(MXM_AT, ISA["IW"].d_func)
    kit.load("x", ONES, "int8", [source], src, edge, at)
    kit.emit(f"MXM{plane}.a", at, "ACC", "int8", src, dst, 0, "set")
    one(kit.program(), "operand", f"ACC in queue MXM{plane}.a", f"cycle {at}", dst, "off the chip edge", edge)


def test_alu_latch_read_before_any_write():
    kit = Kit()
    kit.emit("VXM.1", 5, "MOV", "int8", "alu3", "e4")
    one(kit.program(), "stream-early", "MOV in queue VXM.1", "cycle 5", "alu3")


# ---------------------------------------------------------------- SRAM banks


def _bank(read_addr: int):
    """MEM_E1 writes address 5 (bank 0) in cycle 7 and reads read_addr in cycle 7."""
    kit = Kit()
    kit.load("x", ONES, "int8", ["MEM_W0"], "e0", "MEM_E1", 6)
    kit.emit("MEM_E1", 6, "WRITE", 5, "e0")  # takes e0 in cycle 6, writes SRAM in cycle 7
    assert ISA["WRITE"].d_func == 1 and ISA["READ"].d_skew == 0
    kit.emit("MEM_E1", 7, "READ", read_addr, "w3")
    return kit.program()


def test_read_and_write_in_the_same_bank_in_one_cycle():
    one(_bank(10), "bank", "MEM_E1", "bank 0", "cycle 7", "WRITE in queue MEM_E1 issued at cycle 6",
        "READ in queue MEM_E1 issued at cycle 7")


def test_read_and_write_in_different_banks_in_one_cycle_pass():
    assert check(_bank(MINI.bank_size + 10)) == []


def test_two_reads_of_one_slice_in_one_cycle():
    """Every MEM read has d_skew 0 and a slice has one queue, so two reads in a cycle share a queue slot."""
    kit = Kit()
    kit.emit("MEM_W0", 3, "READ", 0, "e0")
    kit.emit("MEM_W0", 3, "READ", 200, "e1")
    found = check(kit.program())
    assert found and {v.kind for v in found} <= {"slot", "bank"}
    assert "MEM_W0" in found[0].message and "cycle 3" in found[0].message


def test_gather_holds_every_bank():
    kit = Kit()
    kit.load("a", np.zeros((1, 32), np.int16), "int16", ["MEM_W0", "MEM_W1"], "e0", "MEM_E1", 10)
    kit.emit("MEM_E1", 10, "GATHER", "e0", "w2")
    kit.load("x", ONES, "int8", ["MEM_W2"], "e4", "MEM_E1", 9)
    kit.emit("MEM_E1", 9, "WRITE", OUT_ADDR, "e4")  # bank 1, committed in cycle 10
    one(kit.program(), "bank", "MEM_E1", "cycle 10", "GATHER")


# ---------------------------------------------------------------- queues


def test_two_instructions_in_one_queue_slot():
    kit = Kit()
    kit.emit("MEM_W0", 0, "NOP", 5)
    kit.emit("MEM_W0", 3, "READ", 0, "e0")
    one(kit.program(), "slot", "READ in queue MEM_W0 at cycle 3", "NOP issued at cycle 0", "until cycle 5")


def test_instruction_inside_a_repeat_window():
    kit = Kit()
    kit.emit("MEM_W0", 0, "READ", 0, "e0")
    kit.repeat("MEM_W0", 3)  # repetitions in cycles 1..3, the queue busy until cycle 4
    kit.emit("MEM_W0", 3, "READ", 9, "e1")
    one(kit.program(), "slot", "READ in queue MEM_W0 at cycle 3", "until cycle 4")


def test_repeat_faster_than_the_instruction_occupies_its_unit():
    kit = Kit()
    kit.emit("MXM0.w", 0, "IW", "fp16")
    at = max(MXM_AT, ISA["IW"].d_func)
    kit.load("x", np.ones((1, 32), np.float16), "fp16", ["MEM_W0", "MEM_W1"], "w4", "MXM_W", at)
    kit.emit("MXM0.a", at, "ACC", "fp16", "w4", None, 0, "set")
    kit.emit("MXM0.a", at + 2, "REPEAT", 1, 1)  # an fp16 ACC holds the plane 2 cycles
    one(kit.program(), "slot", f"REPEAT in queue MXM0.a at cycle {at + 2}", "every 1 cycle", "for 2")


def test_instruction_on_the_wrong_kind_of_queue():
    kit = Kit()
    kit.emit("VXM.0", 0, "READ", 0, "e0")
    one(kit.program(), "queue", "READ in queue VXM.0 at cycle 0", "cannot issue on queue VXM.0")


def test_issue_while_parked_at_sync():
    kit = Kit()
    kit.emit("MEM_W0", 0, "SYNC")
    kit.emit("MEM_E0", 10, "NOTIFY")
    kit.emit("MEM_W0", 20, "READ", 0, "e0")
    one(kit.program(), "sync", "READ in queue MEM_W0 at cycle 20", "parked at SYNC until cycle 45")


@pytest.mark.parametrize("early", [0, 1])
def test_issue_at_the_release_cycle_passes_and_one_cycle_before_does_not(early):
    kit = Kit()
    release = 10 + kit.chip.notify_cycles
    kit.emit("MEM_W0", 0, "SYNC")
    kit.emit("MEM_E0", 10, "NOTIFY")
    kit.emit("MEM_W0", release - early, "READ", 0, "e0")
    assert kinds(kit.program()) == ["sync"] * early


def test_sync_without_notify():
    kit = Kit()
    kit.emit("MEM_W0", 0, "SYNC")
    one(kit.program(), "sync", "SYNC in queue MEM_W0 at cycle 0", "never comes")


def test_queue_underrun_without_ifetch():
    n = Kit().chip.queue_preload
    text = ".queue MEM_W0\n" + "    NOP 1\n" * n + "    READ 0, e0\n"
    one(assemble(text), "underrun", f"READ in queue MEM_W0 at cycle {n}", f"line {n + 2}", "no IFETCH")


# ---------------------------------------------------------------- operands


@pytest.mark.parametrize("dtype, stream, group", [("int16", "e1", 2), ("fp16", "w3", 2), ("fp32", "e2", 4),
                                                  ("int32", "w6", 4)])
def test_misaligned_stream_groups(dtype, stream, group):
    kit = Kit()
    kit.emit("VXM.3", 7, "MOV", dtype, stream, None)
    one(kit.program(), "operand", "MOV in queue VXM.3", "cycle 7", f"{dtype} on stream {stream}",
        f"aligned group of {group}")


def test_address_out_of_range_including_through_repeat():
    n = MINI.mem_addresses
    kit = Kit()
    kit.emit("MEM_W0", 0, "READ", n - 2, "e0")
    kit.repeat("MEM_W0", 3)  # addresses n - 1, n, n + 1
    found = check(kit.program())
    assert [v.kind for v in found] == ["operand", "operand"]
    assert "(repeat 2) issued at cycle 2" in found[0].message and f"address {n} " in found[0].message
    assert "(repeat 3) issued at cycle 3" in found[1].message and f"address {n + 1} " in found[1].message


@pytest.mark.parametrize("dtype, stream", [("int8", "e16"), ("int32", "w16"), ("int16", "e16")])
def test_stream_out_of_range(dtype, stream):
    kit = Kit()
    kit.emit("VXM.0", 4, "MOV", dtype, stream, None)
    one(kit.program(), "operand", "MOV in queue VXM.0", "cycle 4", f"stream {stream}", "16 streams")


def test_alu_latch_out_of_range():
    kit = Kit()
    kit.emit("VXM.0", 4, "MOV", "int8", "alu16", None)
    one(kit.program(), "operand", "MOV in queue VXM.0", "cycle 4", "alu16")


def test_activation_buffer_out_of_range():
    beyond = f"b{MINI.mxm_act_buffers + 8}"
    kit = Kit()
    kit.load("x", ONES, "int8", ["MEM_W0"], "w4", "MXM_W", MXM_AT)
    kit.emit("MXM0.a", MXM_AT, "ABC", "int8", "w4", beyond)
    one(kit.program(), "operand", "ABC in queue MXM0.a", f"cycle {MXM_AT}", beyond)


def test_link_out_of_range_and_on_the_wrong_side():
    kit = Kit()
    kit.emit("SXM_W.0", 0, "DESKEW", 16)
    kit.emit("SXM_E.0", 0, "DESKEW", 3)  # links 0..7 hang off SXM_W
    found = check(kit.program())
    assert [v.kind for v in found] == ["operand", "operand"]
    assert "link 16" in found[0].message and "SXM_W.0" in found[0].message
    assert "link 3" in found[1].message and "SXM_W" in found[1].message and "SXM_E.0" in found[1].message


# ---------------------------------------------------------------- MXM and C2C


IW_AT = MXM_AT  # an IW issued here installs weights in IW_AT + d_func(IW)


def _acc_after_iw(acc_at: int, iw_dtype="int8", acc_dtype="int8"):
    kit = Kit()
    kit.emit("MXM0.w", IW_AT, "IW", iw_dtype)
    kit.load("x", np.ones((1, 32)), acc_dtype, ["MEM_W0", "MEM_W1"], "w4", "MXM_W", acc_at)
    kit.emit("MXM0.a", acc_at, "ACC", acc_dtype, "w4", None, 0, "set")
    return kit.program()


def test_acc_before_the_weights_are_installed():
    ready = IW_AT + ISA["IW"].d_func
    assert check(_acc_after_iw(ready)) == []
    one(_acc_after_iw(ready - 1), "mxm", "ACC in queue MXM0.a", f"cycle {ready - 1}", "plane 0", "IW")


def test_acc_with_no_iw_at_all():
    kit = Kit()
    kit.load("x", ONES, "int8", ["MEM_W0"], "w4", "MXM_W", MXM_AT)
    kit.emit("MXM0.a", MXM_AT, "ACC", "int8", "w4", None, 0, "set")
    one(kit.program(), "mxm", "ACC in queue MXM0.a", f"cycle {MXM_AT}", "plane 0")


def test_acc_with_the_wrong_dtype():
    at = IW_AT + ISA["IW"].d_func + 5
    one(_acc_after_iw(at, iw_dtype="int8", acc_dtype="fp16"), "mxm", "ACC in queue MXM0.a", f"cycle {at}",
        "int8, not fp16")


def test_acc_from_an_activation_buffer_no_abc_filled_is_a_user_error():
    kit = Kit()
    kit.emit("MXM0.w", 0, "IW", "int8")
    kit.emit("MXM0.a", 30, "ACC", "int8", "b3", None, 0, "set")
    program = kit.program()
    if check(program):
        return  # rejected by the verifier: good
    with pytest.raises(UserError, match="b3"):  # or else by the executor, in one sentence
        run(program, check=False)


def test_receive_before_the_vector_arrives():
    _, arrival, _ = loopback()
    _, _, early = loopback(receive_at=arrival - 1)
    one(early, "c2c", "RECEIVE in queue SXM_W.2", f"cycle {arrival - 1}", "link 0", f"arrives in cycle {arrival}")


def test_receive_with_nothing_sent():
    kit = Kit()
    kit.emit("SXM_W.0", 0, "DESKEW", 1)
    kit.emit("SXM_W.0", 30, "RECEIVE", 1, "e3")
    one(kit.program(), "c2c", "RECEIVE in queue SXM_W.0", "cycle 30", "link 1", "nothing is sent")


@pytest.mark.parametrize("late", [None, 1])
def test_link_used_before_deskew(late):
    """No DESKEW at all, or one whose alignment completes one cycle after the SEND issues."""
    send = SXM_AT + ISA["DESKEW"].d_func
    deskew_at = None if late is None else send - ISA["DESKEW"].d_func + late
    _, _, program = loopback(deskew_at=deskew_at, send_at=send)
    found = check(program)
    assert [v.kind for v in found] == ["c2c"] * (2 if late is None else 1)
    assert "SEND in queue SXM_W.0" in found[0].message and f"cycle {send}" in found[0].message
    assert "link 0" in found[0].message and "DESKEW" in found[0].message


def test_two_sends_on_one_link_in_one_cycle():
    """A link carries one vector at a time; two in a cycle would arrive in an order the program does not fix."""
    kit = Kit()
    send = max(SXM_AT, ISA["DESKEW"].d_func)
    kit.emit("SXM_W.2", 0, "DESKEW", 0)
    kit.load("x", ONES, "int8", ["MEM_W0"], "w5", "SXM_W", send)
    kit.load("y", 2 * ONES, "int8", ["MEM_W1"], "w6", "SXM_W", send)
    kit.emit("SXM_W.0", send, "SEND", 0, "w5")
    kit.emit("SXM_W.1", send, "SEND", 0, "w6")
    found = check(kit.program())
    assert found and all("link 0" in v.message and "SEND" in v.message for v in found)


def test_two_configs_of_one_register_in_one_cycle():
    """Two queues setting vxm.round in one cycle to different values: the result depends on queue order."""
    kit = Kit()
    kit.emit("VXM.0", 0, "CONFIG", "vxm.round", "zero")
    kit.emit("VXM.1", 0, "CONFIG", "vxm.round", "nearest")
    found = check(kit.program())
    assert found and "vxm.round" in found[0].message and "cycle" in found[0].message
