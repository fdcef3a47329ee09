from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from chuchuang.api.deps import sessions_of
from chuchuang.api.auth import current_principal
from chuchuang.api.errors import not_found
from chuchuang.db.models import Product, Window, WindowProduct

router = APIRouter(tags=["catalog"], dependencies=[Depends(current_principal)])


class SkuOut(BaseModel):
    id: int
    spec: str
    price_fen: int
    stock: int
    commission_bps: int | None
    commission_fixed_fen: int | None


class ProductOut(BaseModel):
    id: int
    supplier_id: int
    title: str
    category: str
    skus: list[SkuOut]


def _product_out(p: Product) -> ProductOut:
    return ProductOut(id=p.id, supplier_id=p.supplier_id, title=p.title, category=p.category,
                      skus=[SkuOut.model_validate(s, from_attributes=True) for s in p.skus])


@router.get("/products", response_model=list[ProductOut], summary="Listed products (selection centre)")
def list_products(request: Request, category: str | None = None, limit: int = 50, offset: int = 0):
    query = select(Product).where(Product.status == "listed").options(selectinload(Product.skus))
    if category:
        query = query.where(Product.category == category)
    with sessions_of(request)() as s:
        products = s.scalars(query.order_by(Product.id).limit(min(limit, 200)).offset(offset)).all()
        return [_product_out(p) for p in products]


class WindowOut(BaseModel):
    id: int
    promoter_id: int
    name: str
    products: list[ProductOut]


@router.get("/windows/{window_id}", response_model=WindowOut, summary="A promoter's window (橱窗)")
def get_window(window_id: int, request: Request):
    with sessions_of(request)() as s:
        window = s.get(Window, window_id)
        if window is None:
            raise not_found("window")
        products = s.scalars(
            select(Product).join(WindowProduct, WindowProduct.product_id == Product.id)
            .where(WindowProduct.window_id == window_id, WindowProduct.status == "mounted",
                   Product.status == "listed")
            .options(selectinload(Product.skus)).order_by(Product.id)).all()
        return WindowOut(id=window.id, promoter_id=window.promoter_id, name=window.name,
                         products=[_product_out(p) for p in products])
