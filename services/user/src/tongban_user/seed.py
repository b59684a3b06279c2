"""Seed demo accounts: citizens, staff of the seeded departments, a demo enterprise (development only)."""

from __future__ import annotations

import logging
from datetime import date

from tongban_kit.db import Database
from tongban_kit.demo import DEMO_STAFF, demo_user_id
from tongban_user.access import Caller
from tongban_user.accounts import create_user
from tongban_user.crypto import PiiCipher
from tongban_user.identity import make_id_number
from tongban_user.models import Kind, UserAccount, UserCreate

log = logging.getLogger(__name__)

#: username → (display name, real name, address code, birth date, sequence, mobile)
DEMO_CITIZENS = {
    "demo-citizen": ("张三", "张三", "330106", date(1990, 5, 12), "123", "13800138000"),
    "demo-citizen2": ("李四", "李四", "330203", date(1985, 11, 3), "246", "13900139000"),
    "demo-citizen3": ("王五", "王五", "330302", date(2001, 2, 28), "357", "13700137000"),
}
DEMO_ENTERPRISE = ("杭州通办示范科技有限公司", "91330106MA2CTB00X1")  # a valid credit code


async def seed(db: Database, cipher: PiiCipher) -> int:
    """Create the demo accounts that do not exist yet (by fixed id); returns how many were created."""
    system = Caller(principal="seed", scopes=frozenset(), bootstrap=True)
    created = 0
    async with db.session() as s:
        for username, (name, real, addr, born, seq, mobile) in DEMO_CITIZENS.items():
            if await s.get(UserAccount, demo_user_id(username)) is None:
                await _create(
                    s,
                    username,
                    UserCreate(
                        kind=Kind.citizen,
                        name=name,
                        real_name=real,
                        username=username,
                        id_number=make_id_number(addr, born, seq),
                        mobile=mobile,
                        email=f"{username}@example.com",
                    ),
                    system,
                    cipher,
                )
                created += 1
        for n, (username, (name, _unit, _title, _leader)) in enumerate(DEMO_STAFF.items()):
            if await s.get(UserAccount, demo_user_id(username)) is None:
                await _create(
                    s,
                    username,
                    UserCreate(
                        kind=Kind.staff,
                        name=name,
                        real_name=name,
                        username=username,
                        mobile=f"1350000{n:04d}",
                        email=f"{username}@zj.gov.example",
                    ),
                    system,
                    cipher,
                )
                created += 1
        if await s.get(UserAccount, demo_user_id("demo-enterprise")) is None:
            await _create(
                s,
                "demo-enterprise",
                UserCreate(
                    kind=Kind.legal_person,
                    name=DEMO_ENTERPRISE[0],
                    username="demo-enterprise",
                    credit_code=DEMO_ENTERPRISE[1],
                    representative_id=demo_user_id("demo-citizen"),
                    operator_ids=[demo_user_id("demo-citizen2")],
                ),
                system,
                cipher,
            )
            created += 1
    log.info("seeded demo accounts", extra={"accounts_created": created})
    return created


async def _create(s: object, username: str, data: UserCreate, caller: Caller, cipher: PiiCipher) -> None:
    """Create with the account's fixed demo id, so other services' seeds can refer to it."""
    from sqlmodel.ext.asyncio.session import AsyncSession

    from tongban_user import accounts

    assert isinstance(s, AsyncSession)
    original = accounts.new_account_id
    accounts.new_account_id = lambda: demo_user_id(username)
    try:
        await create_user(s, data=data, caller=caller, cipher=cipher)
    finally:
        accounts.new_account_id = original
