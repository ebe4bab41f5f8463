"""Write ``residents-gbk.csv``: synthetic residents in GBK, as a county office's export.

Every person is obviously fake (names 测试甲, 测试乙, ...; mobiles in 139-0000-xxxx; e-mail at
example.gov.cn) but the identity numbers carry valid GB 11643 check characters and real birth
dates, so the importer's detection finds them as a real export's would. Run it again to
regenerate: ``python examples/generate_residents.py [ROWS] [OUT]``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from ingest.detect import resident_id_check

STEMS = "甲乙丙丁戊己庚辛壬癸"
HEADER = ["序号", "姓名", "身份证号", "手机号", "家庭住址", "出生日期", "补贴金额", "登记时间"]


def resident_id(i: int) -> str:
    # 999999: no real administrative division; born 1970..1999, sequence from i.
    first = f"999999{1970 + i % 30}{1 + i % 12:02d}{1 + i % 28:02d}{i % 1000:03d}"
    return first + resident_id_check(first)


def row(i: int) -> list[str]:
    name = "测试" + STEMS[i % 10] + (str(i // 10) if i >= 10 else "")
    born = f"{1970 + i % 30}-{1 + i % 12:02d}-{1 + i % 28:02d}"
    return [
        str(i + 1),
        name,
        resident_id(i),
        f"1390000{i % 10000:04d}",
        f"示例省示例市测试路{i + 1}号",
        born,
        f"{100 + i % 50}.{i % 100:02d}",
        f"2026-11-{1 + i % 28:02d} 09:{i % 60:02d}:00",
    ]


def write(path: Path, rows: int) -> None:
    with path.open("w", encoding="gbk", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(rows):
            w.writerow(row(i))


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("residents-gbk.csv")
    write(out, n)
    print(f"wrote {n} rows to {out}")
