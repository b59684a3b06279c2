"""Demo identities shared by the services' development seeds (never used outside the dev environment)."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("8b5e4a52-3d0e-4c6e-9a52-7d3f4b0c1a11")

DEMO_PASSWORD = "Tongban-Demo-1"

#: demo staff: username → (display name, seed key of the org unit, title, leader)
DEMO_STAFF: dict[str, tuple[str, str, str, bool]] = {
    "demo-staff": ("王数据", "zj-dsj-sjzyc", "数据资源处工作人员", False),
    "demo-admin": ("李管理", "zj-dsj", "系统管理员", False),
    "dsj-leader": ("赵局长", "zj-dsj", "局长", True),
    "scjg-staff": ("钱市监", "zj-scjg", "登记注册处工作人员", False),
    "gat-staff": ("孙公安", "zj-gat", "户政管理处工作人员", False),
    "sw-staff": ("周税务", "zj-sw", "纳税服务处工作人员", False),
    "rst-staff": ("吴人社", "zj-rst", "社会保险处工作人员", False),
    "wjw-staff": ("郑卫健", "zj-wjw", "妇幼健康处工作人员", False),
    "ybj-staff": ("冯医保", "zj-ybj", "待遇保障处工作人员", False),
    "hz-staff": ("陈杭州", "zj-hz-sjj", "数据资源管理局工作人员", False),
    # delegated administrators (分级授权) of the 杭州市 and 省大数据局 subtrees (the org seed grants them)
    "hz-admin": ("林杭管", "zj-hz", "组织机构管理员", False),
    "dsj-admin": ("许局管", "zj-dsj", "组织机构管理员", False),
}


#: demo citizens and the demo enterprise (legal person) of the user service's seed
DEMO_CITIZENS = ("demo-citizen", "demo-citizen2", "demo-citizen3")
DEMO_ENTERPRISE = "demo-enterprise"
#: the demo apps of the auth service's seed
DEMO_CLIENT_IDS = ("demo-app", "demo-spa")


def demo_user_id(username: str) -> str:
    """The fixed account id of a demo user, so every service's seed refers to the same person."""
    return str(uuid.uuid5(_NAMESPACE, username))


def demo_ids() -> frozenset[str]:
    """Every demo identity: account ids and user names of the demo people, and the demo apps' client ids."""
    names = (*DEMO_STAFF, *DEMO_CITIZENS, DEMO_ENTERPRISE)
    return frozenset((*names, *(demo_user_id(n) for n in names), *DEMO_CLIENT_IDS))
