from chuchuang.cli import app

app(prog_name="chuchuang")
