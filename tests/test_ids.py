"""jetmesh.ids: ULIDs, their random part drawn from a pool of the OS's random bytes."""

from __future__ import annotations

import os

from jetmesh.ids import id_time, id_value, new_id


def test_ids_are_unique_sortable_ulids() -> None:
    ids = [new_id() for _ in range(5_000)]  # more than one pool of random bytes
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 and id_value(i) >> 80 == int(id_time(i) * 1000) for i in ids)
    assert [i[:10] for i in ids] == sorted(i[:10] for i in ids)  # the time part in order


def test_a_forked_child_draws_its_own_random_bytes_not_its_parents_next_ones() -> None:
    new_id()  # the parent's pool holds bytes not used yet
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the ids the parent would make next, were the pool shared
        os.write(write, "".join(new_id()[10:] for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 1024).decode()
    os.close(read)
    parent = "".join(new_id()[10:] for _ in range(3))
    assert len(child) == len(parent) == 48
    assert child != parent
