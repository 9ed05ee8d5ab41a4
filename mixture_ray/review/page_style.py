"""The review page's style sheet (no external fonts or images)."""

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;background:#fafafa;color:#222}
#bar{position:sticky;top:0;z-index:2;background:#fafafa;padding:0.5rem 0;border-bottom:1px solid #ddd;
  display:flex;flex-wrap:wrap;gap:0.4rem 1rem;align-items:center}
#progress{font-weight:600}
#status,#saved{font-size:0.85rem;color:#555}
#overview .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(6.5rem,1fr));gap:0.35rem}
.card{display:block;border:1px solid #ccc;border-radius:4px;padding:0.25rem 0.4rem;background:#fff;
  text-decoration:none;color:inherit;font-size:0.8rem}
.card small{color:#777}
.card .card-finding{display:block;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;color:#777}
.card.done{background:#e5f3e5;border-color:#6a6}
.card.done .card-finding{color:#234}
.card.current{outline:2px solid #36c}
.cluster{background:#fff;border:1px solid #ddd;border-radius:6px;padding:0.8rem;margin:0 0 1rem;
  scroll-margin-top:4.5rem}
.cluster:focus{outline:none}
.cluster.current{outline:3px solid #36c}
.cluster.done{border-color:#6a6}
.cluster .head{display:flex;flex-wrap:wrap;gap:0.3rem 1.2rem;align-items:baseline}
.cluster h2{margin:0}
.cluster img{max-width:100%;height:auto;display:block;margin:0.4rem 0;background:#eee}
.shown,.mix{font-size:0.8rem;color:#555;margin:0.3rem 0}
.mix div{display:flex;gap:0.5rem}
.mix dt{font-weight:600;min-width:6rem}
.mix dd{margin:0}
.purity{font-size:0.8rem;color:#555;margin:0.3rem 0}
.badge{display:inline-block;border-radius:3px;padding:0 0.35rem;font-weight:600}
.one-site{background:#fde2c8;color:#8a3b00;border:1px solid #e59a55}
.card .card-site{display:block;font-size:0.7rem;font-weight:600;color:#8a3b00}
#site-audit{font-size:0.85rem;margin:0.3rem 0 0.6rem}
#keys table{border-collapse:collapse;font-size:0.85rem}
#keys td{padding:0.1rem 0.8rem 0.1rem 0}
kbd{border:1px solid #bbb;border-radius:3px;padding:0 0.25rem;background:#fff;font-size:0.8rem}
textarea{width:100%;height:12rem;font-family:monospace}
.unassigned{outline:2px solid #d33}
"""
