"""`offhook report`, `offhook metrics export`, `offhook metrics purge`: call metrics for people.

Every argument is checked before anything is read or written (bad input: one line,
exit 2, nothing changed). numpy, rich and matplotlib are imported inside handlers so
`offhook --help` stays fast.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offhook.cli import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from offhook.metrics.report import Report, ReportQuery, ReportRow

FORMATS = ("table", "csv", "json")

REPORT_EPILOG = """\
definitions:
  handled calls  answered by the agent, including calls later transferred or escalated;
                 missed (not answered by the agent) and abandoned (caller hung up while
                 ringing) calls are not handled
  ring           ring start to answer of handled calls (average speed of answer)
  talk           answer to hang-up, minus hold
  hold           the call's holds added up; "holds >2 min": holds longer than 2 minutes
  wrap-up        hang-up to the end of after-call work
  AHT            (talk + hold + wrap-up) summed over handled calls / number of handled calls
  missed rate    (missed + abandoned) / all calls
  median, p90    linear interpolation between ranks (like Excel PERCENTILE.INC)
  day, hour      the agent's local time at ring start, in the agent's time zone (DST aware)
Durations come from the monotonic clock: changing the PC's clock during a call changes no figure.
Sources: the store (default: $OFFHOOK_DATA_DIR or the user data dir, metrics.sqlite3) and/or
exports from `offhook metrics export`; give several to report on a team.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report",
        help="call metrics: ring, talk, hold, wrap-up, AHT, missed rate (table, CSV, JSON, PNG)",
        description="Report call timings from one or more metrics stores or exports.",
        epilog=REPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("sources", nargs="*", type=Path, metavar="FILE", help="stores or exports (default: --db)")
    _db_option(report, many=True)
    _range_options(report)
    report.add_argument(
        "--by",
        metavar="day|hour|agent",
        help="one row per local day, local hour or agent; over PostgreSQL also site, team, month and pairs (team,day)",
    )
    report.add_argument("--site", metavar="NAME", help="over PostgreSQL: only this site's calls")
    report.add_argument("--team", metavar="NAME", help="over PostgreSQL: only this team's desks (their team now)")
    report.add_argument("--format", default="table", metavar="table|csv|json", help="output format (default: table)")
    report.add_argument(
        "--chart",
        type=Path,
        metavar="FILE.png",
        help="also write charts: AHT per day, ring times; FILE-quality.png when calls were metered",
    )
    report.set_defaults(handler=_report)

    metrics = subparsers.add_parser("metrics", help="export or purge the call metrics store")
    commands = metrics.add_subparsers(title="metrics commands", metavar="COMMAND")
    export = commands.add_parser(
        "export",
        help="write a portable file of completed calls for a supervisor",
        description="Write completed calls to a portable file that `offhook report` reads "
        "(SQLite, with a format version). Customer numbers are left out unless --keep-numbers.",
    )
    export.add_argument("output", type=Path, help="the export file to write")
    _db_option(export, many=False)
    _range_options(export)
    export.add_argument("--keep-numbers", action="store_true", help="include the (hashed) customer numbers")
    export.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    export.set_defaults(handler=_export)

    purge = commands.add_parser(
        "purge",
        help="apply the retention period: delete old calls (or only their customer numbers)",
        description="Delete completed calls that rang more than DAYS ago, or with --numbers-only just "
        "their customer numbers. Calls in progress are never touched.",
    )
    _db_option(purge, many=False)
    purge.add_argument("--older-than", metavar="DAYS", default="365", help="retention period in days (default: 365)")
    purge.add_argument("--numbers-only", action="store_true", help="keep the calls, erase their customer numbers")
    purge.set_defaults(handler=_purge)

    panel = subparsers.add_parser(
        "panel",
        help="open the agent panel (live call, timers, today's figures) in the browser",
        description="Ask the running daemon for a one-time token and open the agent panel served on "
        "127.0.0.1. The token travels in the URL fragment: it never reaches a server log and works once.",
    )
    panel.add_argument("--config", type=Path, help="daemon config (for api.port)")
    panel.add_argument("--api-port", type=int, help="the daemon's API port (default: api.port of the config)")
    panel.add_argument("--print-url", action="store_true", help="print the URL instead of opening a browser")
    panel.set_defaults(handler=_panel)


def _db_option(parser: argparse.ArgumentParser, *, many: bool) -> None:
    help_text = "metrics store (default: $OFFHOOK_DATA_DIR/metrics.sqlite3 or the user data dir)"
    if many:
        parser.add_argument(
            "--db",
            type=_store_or_url,
            action="append",
            default=[],
            metavar="FILE",
            help=help_text + "; repeatable; or postgresql://… for the whole floor (offhook central's database)",
        )
    else:
        parser.add_argument("--db", type=Path, metavar="FILE", help=help_text)


def _range_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="YYYY-MM-DD", help="first local day included")
    parser.add_argument("--until", metavar="YYYY-MM-DD", help="last local day included")
    parser.add_argument("--agent", metavar="NAME", help="only this agent's calls")


def _date(option: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date (use YYYY-MM-DD)") from None


def _query(args: argparse.Namespace, by: str | None = None) -> ReportQuery:
    from offhook.metrics.report import ReportQuery
    from offhook.metrics.store import MetricsError

    try:
        return ReportQuery(_date("--since", args.since), _date("--until", args.until), args.agent, by)
    except MetricsError as exc:
        raise UsageError(str(exc)) from None


def _default_db() -> Path:
    from offhook.metrics.store import default_db_path

    return default_db_path()


# ---------------------------------------------------------------------- report


def _report(args: argparse.Namespace) -> int:
    from offhook.metrics import report as report_module
    from offhook.metrics.store import MetricsError

    if any(isinstance(db, str) for db in args.db):
        return _floor_report(args)
    if args.site is not None or args.team is not None:
        raise UsageError("--site and --team need the floor's database (--db postgresql://…)")
    if args.by is not None and args.by not in report_module.BY_CHOICES:
        raise UsageError(f"--by must be day, hour or agent, not {args.by!r}")
    if args.format not in FORMATS:
        raise UsageError(f"--format must be table, csv or json, not {args.format!r}")
    query = _query(args, args.by)
    if args.chart is not None:
        if args.chart.suffix.lower() != ".png":
            raise UsageError(f"--chart {args.chart} must be a .png file")
        if not args.chart.parent.resolve().is_dir():
            raise UsageError(f"--chart {args.chart}: no such directory {args.chart.parent}")
        _check_writable(args.chart)
    paths = [*args.sources, *args.db] or [_default_db()]
    matplotlib_ready = None
    if args.chart is not None:
        # Importing matplotlib takes ~0.7 s: do it while SQLite works (it releases the GIL).
        import threading

        from offhook.metrics.charts import preload

        matplotlib_ready = threading.Thread(target=preload, name="matplotlib-import", daemon=True)
        matplotlib_ready.start()
    try:
        sources = report_module.open_sources(paths, query)
        try:
            result = report_module.build(sources, query)
            by_day = None
            shares: dict[str, Any] = {}
            if args.chart is not None:
                by_day = result if query.by == "day" else report_module.build(sources, _query(args, "day"))
                shares = report_module.agent_shares(sources, query)
        finally:
            for conn in sources:
                conn.close()
    except MetricsError as exc:
        raise UsageError(report_module.printable(str(exc))) from None
    _emit(result, args.format)
    if by_day is not None:
        from offhook.metrics.charts import write_chart

        if matplotlib_ready is not None:
            matplotlib_ready.join()
        try:
            write_chart(by_day, args.chart)
        except OSError as exc:  # the directory went away or filled up after the check
            raise UsageError(f"--chart {args.chart}: cannot write it: {exc.strerror or exc}") from None
        print(f"chart written to {args.chart}", file=sys.stderr)
        if by_day.total.analytics[0]:  # conversation analytics for the quality lead, when any call was metered
            from offhook.metrics.charts import quality_chart_path, write_quality_chart

            quality = quality_chart_path(args.chart)
            try:
                write_quality_chart(by_day, shares, quality)
            except OSError as exc:
                raise UsageError(f"--chart {quality}: cannot write it: {exc.strerror or exc}") from None
            print(f"chart written to {quality}", file=sys.stderr)
    return EXIT_OK


def _emit(result: Report, fmt: str) -> None:
    """Warnings to stderr, then the report as a table, CSV or JSON (one store or the floor)."""
    from offhook.metrics.report import printable

    for warning in result.warnings:
        print(f"offhook: warning: {printable(warning)}", file=sys.stderr)
    try:
        if fmt == "json":
            json.dump(result.as_json(), sys.stdout, indent=1)
            sys.stdout.write("\n")
        elif fmt == "csv":
            _write_csv(result)
        else:
            _print_table(result)
        sys.stdout.flush()
    except BrokenPipeError:  # `offhook report | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _check_writable(path: Path) -> None:
    """Refuse a chart path the report could not write, before any work: by trying, since a
    permission check says yes to root even on a read-only file system."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".offhook-chart-"):
            pass
    except OSError as exc:
        raise UsageError(f"--chart {path}: cannot write in {path.parent}: {exc.strerror or exc}") from None


def _write_csv(result: Report) -> None:
    from offhook.metrics.report import FLAT_FIELDS

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(FLAT_FIELDS)
    writer.writerows(result.flat_rows(missing="", text=_csv_text))  # the group is the only text cell


def _csv_text(text: str) -> str:
    """A text cell a spreadsheet shows as text: one starting with = + - @ tab or CR would be run as a
    formula (=HYPERLINK(...) leaks data), so it gets a leading ' as OWASP advises; controls are replaced."""
    from offhook.metrics.report import printable

    return printable("'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    whole = round(seconds)
    return (
        f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
        if whole >= 3600
        else f"{whole // 60}:{whole % 60:02d}"
    )


# Table layout. rich shrinks columns that do not fit to "24…", so every column's width is decided here:
# a number or a duration is never cut or folded; a group name (an id) and a header wrap between words
# and fold only a word wider than the column. When even the narrowest widths do not fit the terminal,
# the columns are split over several tables, each led by the group column.
_NUMBER, _SPREAD, _NAME = "number", "spread", "name"
_LONGEST_WORD = 20  # a longer word in a group name folds rather than widen the column


@dataclass
class _Column:
    header: str
    kind: str
    cells: list[str]
    styles: list[str]

    def widths(self) -> tuple[int, int]:
        """(narrowest, widest) width of the column's text, without padding."""
        from rich.cells import cell_len

        header = max((cell_len(word) for word in self.header.split()), default=0)
        widest = max([header, *map(cell_len, self.cells)])
        if self.kind == _NUMBER:
            return widest, widest
        words = max((cell_len(word) for cell in self.cells for word in cell.split()), default=1)
        if self.kind == _NAME:
            words = min(words, _LONGEST_WORD)
        else:  # a duration keeps its " /" on its line: "0:18 /", "0:17 /", "0:24"
            words += 2
        return max(header, words), widest


def _table_columns(result: Report) -> list[_Column]:
    from offhook.metrics.report import printable

    rows = [*result.rows, result.total]
    by = result.query.by
    # An hour shows as "2026-03-10 09:00+01:00": it may wrap after the date (CSV and JSON keep ISO 8601).
    groups = [row.group.replace("T", " ", 1) if by == "hour" else row.group for row in result.rows]
    columns = [_Column(by or "", _NAME, [printable(g) for g in [*groups, result.total.group]], ["bold"] * len(rows))]
    plain = [""] * len(rows)
    for header, cells in (
        ("calls", [str(row.calls) for row in rows]),
        ("handled", [str(row.handled) for row in rows]),
        ("missed", [str(row.missed) for row in rows]),
        ("abandoned", [str(row.abandoned) for row in rows]),
        ("missed rate", ["–" if row.missed_rate is None else f"{row.missed_rate:.1%}" for row in rows]),
        ("escalated", [str(row.escalated) for row in rows]),
        ("transferred", [str(row.transferred) for row in rows]),
    ):
        columns.append(_Column(header, _NUMBER, cells, plain))
    for header, name in (("ring", "ring"), ("talk", "talk"), ("hold", "hold"), ("wrap-up", "wrap")):
        cells = [" / ".join(_duration(value) for value in getattr(row, name)) for row in rows]
        columns.append(_Column(f"{header} mean / med / p90", _SPREAD, cells, plain))
    columns.append(_Column("AHT", _NUMBER, [_duration(row.aht_s) for row in rows], ["bold"] * len(rows)))
    columns.append(
        _Column(
            "holds >2 min",
            _NUMBER,
            [str(row.long_holds) for row in rows],
            ["red" if row.long_holds else "" for row in rows],
        )
    )
    if result.total.holds:  # the same long holds, as a rate a quality lead reads
        cells = ["–" if row.checkin_compliance is None else f"{row.checkin_compliance:.0%}" for row in rows]
        columns.append(_Column("check-ins on time", _NUMBER, cells, plain))
    if result.total.analytics[0]:  # conversation analytics, when the audio pipeline metered any call
        columns += _analytics_columns(rows)
    return columns


def _analytics_columns(rows: list[ReportRow]) -> list[_Column]:
    """Means over the metered calls; "–" where a group has none (never a zero)."""
    from offhook.metrics.report import ANALYTICS_MEANS

    def mean(row: ReportRow, name: str) -> float | None:
        value: float | None = row.analytics[1 + ANALYTICS_MEANS.index(name)]
        return value

    def share(value: float | None) -> str:
        return "–" if value is None else f"{value:.0%}"

    def seconds(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f} s"

    plain = [""] * len(rows)
    return [
        _Column("metered calls", _NUMBER, [str(row.analytics[0]) for row in rows], plain),
        _Column("agent talk share", _NUMBER, [share(mean(row, "agent_share")) for row in rows], plain),
        _Column("overtalk per call", _NUMBER, [seconds(mean(row, "overtalk_s")) for row in rows], plain),
        _Column("dead air per call", _NUMBER, [seconds(mean(row, "dead_air_s")) for row in rows], plain),
        _Column("response median", _NUMBER, [seconds(mean(row, "response_median_s")) for row in rows], plain),
    ]


def _layout(columns: list[_Column], width: int) -> list[list[tuple[int, int]]]:
    """Tables of (column index, width): one table if the columns fit ``width``, else as few as fit, their
    columns shared out evenly (never one table holding a single column the others had no room for)."""
    from itertools import combinations, pairwise

    ranges = [column.widths() for column in columns]

    def size(indexes: list[int]) -> int:  # 3 per column: its left border and padding
        return sum(ranges[i][0] for i in [0, *indexes]) + 3 * (len(indexes) + 1) + 1

    rest = list(range(1, len(columns)))
    parts: list[list[int]] = [[]]  # the fewest tables: each as full as it goes (optimal for an ordered list)
    for index in rest:
        if parts[-1] and size([*parts[-1], index]) > width:
            parts.append([])
        parts[-1].append(index)
    best = parts
    for cuts in combinations(range(1, len(rest)), len(parts) - 1):  # as many tables, the widest narrowest
        split = [rest[a:b] for a, b in pairwise([0, *cuts, len(rest)])]
        if max(map(size, split)) < max(map(size, best)):
            best = split
    tables = []
    for part in best:
        indexes = [0, *part]
        widths = [ranges[i][0] for i in indexes]
        spare = width - size(part)
        while spare > 0:  # the room left widens the narrowest wrapping columns first
            growable = [p for p, i in enumerate(indexes) if widths[p] < ranges[i][1]]
            if not growable:
                break
            narrowest = min(widths[p] for p in growable)
            for p in growable:
                if widths[p] == narrowest and spare > 0:
                    widths[p] += 1
                    spare -= 1
        tables.append(list(zip(indexes, widths, strict=True)))
    return tables


def _print_table(result: Report) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from offhook.metrics.report import AHT_DEFINITION, printable

    columns = _table_columns(result)
    if sys.stdout.isatty():
        console = Console()
    else:  # a pipe: one line per row, whatever it takes
        widest = sum(column.widths()[1] for column in columns) + 3 * len(columns) + 1
        console = Console(width=max(80, widest), no_color=True, highlight=False)
    query = result.query
    scope = [result.period()]
    if query.agent is not None:
        scope.append(f"agent {query.agent}")
    title = Text(printable(f"Call metrics ({', '.join(scope)})"))
    tables = _layout(columns, console.width)
    for number, part in enumerate(tables, 1):
        table = Table(
            title=title if number == 1 else None,
            caption=AHT_DEFINITION if number == len(tables) else None,
            caption_justify="left",
        )
        for index, width in part:
            column = columns[index]
            table.add_column(
                column.header,
                justify="left" if column.kind == _NAME else "right",
                width=width,  # never narrower than a number: no cell of a number column wraps
                overflow="fold",
            )
        rows = len(columns[0].cells)
        for row in range(rows):
            table.add_row(
                *(Text(columns[index].cells[row], style=columns[index].styles[row]) for index, _ in part),
                style="bold" if row == rows - 1 else None,
                end_section=row == rows - 2,
            )
        console.print(table)
    if result.total.calls == 0:
        console.print("no completed calls match")


# ---------------------------------------------------------------------- export / purge


def _export(args: argparse.Namespace) -> int:
    from offhook.metrics.export import export
    from offhook.metrics.store import MetricsError

    query = _query(args)
    if not args.output.parent.resolve().is_dir():
        raise UsageError(f"{args.output}: no such directory {args.output.parent}")
    try:
        count = export(args.db or _default_db(), args.output, query, keep_numbers=args.keep_numbers, force=args.force)
    except MetricsError as exc:
        raise UsageError(str(exc)) from None
    print(f"exported {count} calls to {args.output}")
    return EXIT_OK


def _purge(args: argparse.Namespace) -> int:
    from offhook.metrics import privacy, store

    try:
        days = float(args.older_than)
    except ValueError:
        raise UsageError(f"--older-than {args.older_than!r} is not a number of days") from None
    if not days >= 0:
        raise UsageError(f"--older-than {args.older_than!r} must be zero or more days")
    path = args.db or _default_db()
    try:
        conn = store.connect(path)
    except store.MetricsError as exc:
        raise UsageError(str(exc)) from None
    try:
        count = privacy.purge(conn, older_than_days=days, numbers_only=args.numbers_only)
    finally:
        conn.close()
    what = "erased the customer numbers of" if args.numbers_only else "deleted"
    print(f"{what} {count} calls that rang more than {days:g} days ago")
    return EXIT_OK


# ---------------------------------------------------------------------- panel


def _panel(args: argparse.Namespace) -> int:
    from offhook import config as config_module

    if args.api_port is not None:
        port = args.api_port
        if not 1 <= port <= 65535:
            raise UsageError(f"--api-port {port} is not a port number")
    else:
        try:
            port = int(config_module.load(args.config)["api"]["port"])
        except config_module.ConfigError as exc:
            raise UsageError(str(exc)) from None
    try:
        token = one_time_token(port)
    except OSError as exc:
        print(
            f"offhook: error: no daemon answers on 127.0.0.1:{port} ({exc}); start it with `offhook daemon`",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except RuntimeError as exc:
        print(f"offhook: error: the daemon refused a panel token: {exc}", file=sys.stderr)
        return EXIT_FAILED
    url = f"http://127.0.0.1:{port}/panel/#token={token}"
    if args.print_url:
        print(url)
        return EXIT_OK
    import webbrowser

    if not webbrowser.open(url):
        print(url)
    return EXIT_OK


def one_time_token(port: int) -> str:
    """Authenticate as a local program (the user token file) and ask for a one-time panel token."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    from offhook.api.tokens import TokenStore

    try:
        with connect(f"ws://127.0.0.1:{port}/api", open_timeout=5, close_timeout=1) as ws:
            ws.send(json.dumps({"type": "auth", "token": TokenStore().user_token()}))
            welcome = json.loads(ws.recv(timeout=5))
            if welcome.get("type") != "welcome":
                raise RuntimeError(str(welcome.get("error", "not authenticated")))
            ws.send(json.dumps({"id": 1, "type": "one_time_token"}))
            reply = json.loads(ws.recv(timeout=5))
    except (WebSocketException, TimeoutError) as exc:
        raise RuntimeError(str(exc) or type(exc).__name__) from None
    if not reply.get("ok") or not isinstance(reply.get("token"), str):
        raise RuntimeError(str(reply.get("error", "no token in the reply")))
    return str(reply["token"])


# ---------------------------------------------------------------------- the floor (PostgreSQL)


def _store_or_url(text: str) -> Path | str:
    """A store's path, or a PostgreSQL URL kept as text (a Path would fold its '//')."""
    return text if text.startswith(("postgresql://", "postgres://")) else Path(text)


def _floor_report(args: argparse.Namespace) -> int:
    """The same report over central's PostgreSQL (floor/reports_pg.py says what differs)."""
    import psycopg

    from offhook.floor import reports_pg
    from offhook.metrics.report import printable
    from offhook.metrics.store import MetricsError

    if len(args.db) != 1 or args.sources:
        raise UsageError("a report over PostgreSQL reads that one database: give no other --db or FILE")
    if args.chart is not None:
        raise UsageError("--chart reads SQLite stores and exports only, not PostgreSQL")
    if args.format not in FORMATS:
        raise UsageError(f"--format must be table, csv or json, not {args.format!r}")
    try:
        since, until = _date("--since", args.since), _date("--until", args.until)
        query = reports_pg.FloorQuery(since, until, args.agent, args.by, site=args.site, team=args.team)
    except MetricsError as exc:
        raise UsageError(str(exc)) from None
    try:
        with psycopg.connect(args.db[0], connect_timeout=10) as conn:
            conn.read_only = True
            result = reports_pg.build(conn, query)
    except psycopg.Error as exc:
        # The URL may carry a password: never echo it, only the server's one-line reason.
        raise UsageError(f"the floor's database: {printable(' '.join(str(exc).split())[:200])}") from None
    _emit(result, args.format)
    return EXIT_OK
