"""Imports every model module so `Base.metadata` knows all tables (Alembic, tests).
Add a line here when you add a models module."""

from chuchuang.db import models  # noqa: F401
from chuchuang.db import catalog_models  # noqa: F401
from chuchuang.db import promoter_models  # noqa: F401
from chuchuang.db import order_models  # noqa: F401
from chuchuang.db import withdrawal_models  # noqa: F401
from chuchuang.db import settlement_models  # noqa: F401
from chuchuang.db import risk_models  # noqa: F401
from chuchuang.db import reconciliation_models  # noqa: F401
from chuchuang.db import bonus_models  # noqa: F401
from chuchuang.db import presale_models  # noqa: F401
from chuchuang.db import channels_models  # noqa: F401
from chuchuang.db.models import Base

__all__ = ["Base"]
