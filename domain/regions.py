"""China's administrative division codes (GB/T 2260, 中华人民共和国行政区划代码): six digits,
province (2) + city (2) + county (2), e.g. 440105 广州市海珠区, 440100 广州市, 440000 广东省.

The mini program's region picker (`<picker mode="region">`) hands the buyer's choice over as
names and these codes; an address keeps the county's (or a city's) code. Freight rules name
regions by code at any of the three levels. Only the province table is kept here: a code is
checked for its shape and its province, which is what freight and the risk rules rely on."""

from __future__ import annotations

import re

PROVINCES: dict[str, str] = {
    "11": "北京", "12": "天津", "13": "河北", "14": "山西", "15": "内蒙古",
    "21": "辽宁", "22": "吉林", "23": "黑龙江",
    "31": "上海", "32": "江苏", "33": "浙江", "34": "安徽", "35": "福建", "36": "江西", "37": "山东",
    "41": "河南", "42": "湖北", "43": "湖南", "44": "广东", "45": "广西", "46": "海南",
    "50": "重庆", "51": "四川", "52": "贵州", "53": "云南", "54": "西藏",
    "61": "陕西", "62": "甘肃", "63": "青海", "64": "宁夏", "65": "新疆",
    "71": "台湾", "81": "香港", "82": "澳门",
}
CODE = re.compile(r"^\d{6}$")


class BadRegion(ValueError):
    pass


def check_code(code: str) -> str:
    """A well-formed GB/T 2260 code of a known province (any level); raises BadRegion."""
    if not isinstance(code, str) or not CODE.match(code):
        raise BadRegion(f"region code {code!r} is not six digits (GB/T 2260)")
    if code[:2] not in PROVINCES:
        raise BadRegion(f"region code {code} names no province (GB/T 2260)")
    if code[2:4] == "00" and code[4:] != "00":
        raise BadRegion(f"region code {code} has a county but no city")
    return code


def check_address_code(code: str, province_name: str | None = None) -> str:
    """An address's code: a city or county (not a whole province), whose province is the one the
    address names (广东 and 广东省 both match 440105)."""
    check_code(code)
    if code[2:] == "0000":
        raise BadRegion(f"region code {code} is a whole province: pick the city and district")
    if province_name is not None and not province_name.strip().startswith(PROVINCES[code[:2]]):
        raise BadRegion(f"region code {code} is in {PROVINCES[code[:2]]}, not in {province_name}")
    return code


def level(code: str) -> int:
    """1 province, 2 city, 3 county."""
    if code[2:] == "0000":
        return 1
    return 2 if code[4:] == "00" else 3


def contains(region: str, code: str) -> bool:
    """Whether the address code `code` lies in `region` (a province, city or county code)."""
    kept = {1: 2, 2: 4, 3: 6}[level(region)]
    return code[:kept] == region[:kept]
