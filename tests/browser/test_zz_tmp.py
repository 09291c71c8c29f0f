from soapd.store.readonly import ReadOnlyStore
import json, urllib.request
def test_show(site):
    with ReadOnlyStore(site.state_dir / "soapd.db") as store:
        for name in ("DEMO-FADER", "DEMO-RISER"):
            for s in store.stacked(name):
                print(name, s.epoch_key, s.members, s.excluded, s.is_detection, s.mag, s.lim_mag, s.mid_time_utc)
    for name in ("DEMO-FADER", "DEMO-RISER"):
        with urllib.request.urlopen(site.web.url + f"/api/targets/{name}/gcn") as r:
            print(json.loads(r.read())["text"])
