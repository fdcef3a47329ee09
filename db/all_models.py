"""Imports every model module so `Base.metadata` knows all tables (Alembic, tests).
Add a line here when you add a models module."""

from db import models  # noqa: F401
from db import catalog_models  # noqa: F401
from db import promoter_models  # noqa: F401
from db import order_models  # noqa: F401
from db import withdrawal_models  # noqa: F401
from db import settlement_models  # noqa: F401
from db import risk_models  # noqa: F401
from db import reconciliation_models  # noqa: F401
from db import bonus_models  # noqa: F401
from db import presale_models  # noqa: F401
from db import channels_models  # noqa: F401
from db import flash_models  # noqa: F401
from db import console_models  # noqa: F401
from db import storefront_models  # noqa: F401
from db import group_models  # noqa: F401
from db import review_models  # noqa: F401
from db.models import Base

__all__ = ["Base"]
