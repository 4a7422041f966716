"""Agents of the replay tests, importable by ``jetmesh replay --agent`` as
``tests.harness.replay_agents:<name>`` (run from the repository root).

``shop`` asks ``stock`` and ``pricer``, charges once (``ctx.once``), counts its runs in
working memory and returns a :class:`Receipt`. The ``shop_*`` variants are the same role with
changed code, each differing from ``shop`` in one way.
"""

from __future__ import annotations

import msgspec

from jetmesh import Agent, CallFailed, Context, Reject

SOLD_OUT = "unobtainium"


class Order(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Order/1"

    item: str
    qty: int


class Count(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Count/1"

    n: int


class Receipt(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Receipt/1"

    item: str
    in_stock: int
    total: int
    charge: int


charges: list[int] = []
"""Every charge that really ran, in this process."""


async def charge(amount: int) -> int:
    charges.append(amount)
    return 1000 + len(charges)


stock = Agent("stock", description="how many of an item are in stock")


@stock.handler
async def count_stock(order: Order, ctx: Context) -> Count:
    if order.item == SOLD_OUT:
        raise Reject("sold out")
    return Count(len(order.item))


pricer = Agent("pricer", description="the unit price of an item")


@pricer.handler
async def unit_price(order: Order, ctx: Context) -> Count:
    return Count(3 if order.qty > 1 else 4)


async def _in_stock(ctx: Context, order: Order, at: str = "stock") -> int:
    try:
        return (await ctx.call(at, order, returns=Count)).n
    except CallFailed:
        return 0


async def _finish(ctx: Context, order: Order, in_stock: int, total: int) -> Receipt:
    receipt = await ctx.once("charge", lambda: charge(total), returns=int)
    await ctx.memory.update("runs", int, lambda n: (n or 0) + 1)
    return Receipt(order.item, in_stock, total, receipt)


shop = Agent("shop", description="checks stock, prices, charges")


@shop.handler
async def buy(order: Order, ctx: Context) -> Receipt:
    in_stock = await _in_stock(ctx, order)
    price = await ctx.call("pricer", order, returns=Count)
    return await _finish(ctx, order, in_stock, price.n * order.qty)


shop_other_target = Agent("shop", description="asks the warehouse instead of stock")


@shop_other_target.handler
async def buy_from_warehouse(order: Order, ctx: Context) -> Receipt:
    in_stock = await _in_stock(ctx, order, at="warehouse")
    price = await ctx.call("pricer", order, returns=Count)
    return await _finish(ctx, order, in_stock, price.n * order.qty)


shop_other_body = Agent("shop", description="prices one more than ordered")


@shop_other_body.handler
async def buy_one_more(order: Order, ctx: Context) -> Receipt:
    in_stock = await _in_stock(ctx, order)
    price = await ctx.call("pricer", Order(order.item, order.qty + 1), returns=Count)
    return await _finish(ctx, order, in_stock, price.n * order.qty)


shop_other_result = Agent("shop", description="adds a fee to the total")


@shop_other_result.handler
async def buy_with_fee(order: Order, ctx: Context) -> Receipt:
    in_stock = await _in_stock(ctx, order)
    price = await ctx.call("pricer", order, returns=Count)
    receipt = await _finish(ctx, order, in_stock, price.n * order.qty)
    return msgspec.structs.replace(receipt, total=receipt.total + 1)


shop_no_charge = Agent("shop", description="forgets to charge, and charges a tip instead")


@shop_no_charge.handler
async def buy_with_tip(order: Order, ctx: Context) -> Receipt:
    in_stock = await _in_stock(ctx, order)
    price = await ctx.call("pricer", order, returns=Count)
    tip = await ctx.once("tip", lambda: charge(1), returns=int)
    return Receipt(order.item, in_stock, price.n * order.qty, tip)


shop_waits = Agent("shop", description="waits for an approval first")


@shop_waits.handler
async def buy_when_approved(order: Order, ctx: Context) -> Receipt:
    await ctx.wait_for("approval", returns=bool, timeout=60)
    return await buy(order, ctx)
