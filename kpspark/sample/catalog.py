"""The synthetic catalog behind the sample marketplace: categories, product types (with the
synonyms sellers and buyers use), brands, colors and specs. Invented for the demo and tests."""
from __future__ import annotations

# category -> product types (canonical name, synonyms), brands, colors, specs, typical price
CATALOG: dict[str, dict[str, object]] = {
    "Cell Phones & Smartphones": {
        "ptypes": [("smartphone", ["cell phone", "mobile phone"]), ("phone case", ["cover", "case"]),
                   ("screen protector", ["tempered glass"]), ("charger", ["charging cable", "power adapter"])],
        "brands": ["Apple", "Samsung", "Google", "Motorola", "OnePlus", "Nokia", "Sony", "Xiaomi"],
        "colors": ["black", "white", "blue", "red", "green", "gold", "silver", "purple"],
        "specs": ["64gb", "128gb", "256gb", "unlocked", "5g"],
        "price": 250.0,
    },
    "Laptops & Netbooks": {
        "ptypes": [("laptop", ["notebook", "notebook computer"]), ("laptop bag", ["laptop sleeve"]),
                   ("laptop battery", ["replacement battery"]), ("docking station", ["usb-c dock"])],
        "brands": ["Dell", "HP", "Lenovo", "Asus", "Acer", "Apple", "Microsoft", "MSI"],
        "colors": ["black", "silver", "gray", "white", "blue"],
        "specs": ["16gb ram", "8gb ram", "512gb ssd", "1tb ssd", "15.6 inch", "14 inch"],
        "price": 600.0,
    },
    "Athletic Shoes": {
        "ptypes": [("running shoes", ["running sneakers", "trainers"]), ("basketball shoes", ["high tops"]),
                   ("slides", ["sandals"]), ("hiking boots", ["trail shoes"])],
        "brands": ["Nike", "Adidas", "New Balance", "Asics", "Puma", "Reebok", "Brooks", "Hoka"],
        "colors": ["black", "white", "red", "blue", "gray", "pink", "green"],
        "specs": ["size 9", "size 10", "size 11", "size 8", "wide"],
        "price": 90.0,
    },
    "Power Tools": {
        "ptypes": [("cordless drill", ["drill driver", "power drill"]), ("circular saw", ["skil saw"]),
                   ("impact driver", ["impact wrench"]), ("angle grinder", ["grinder"])],
        "brands": ["DeWalt", "Makita", "Milwaukee", "Bosch", "Ryobi", "Ridgid", "Metabo", "Craftsman"],
        "colors": ["yellow", "red", "blue", "green", "black"],
        "specs": ["20v", "18v", "brushless", "kit", "tool only"],
        "price": 120.0,
    },
    "Wristwatches": {
        "ptypes": [("watch", ["wristwatch", "timepiece"]), ("smartwatch", ["smart watch", "fitness watch"]),
                   ("watch band", ["watch strap"]), ("watch winder", ["winder box"])],
        "brands": ["Seiko", "Casio", "Citizen", "Timex", "Fossil", "Garmin", "Rolex", "Omega"],
        "colors": ["black", "silver", "gold", "blue", "brown", "green"],
        "specs": ["automatic", "quartz", "40mm", "44mm", "titanium"],
        "price": 180.0,
    },
    "Headphones": {
        "ptypes": [("headphones", ["over ear headphones", "headset"]), ("earbuds", ["wireless earbuds", "in ear"]),
                   ("headphone stand", ["headset holder"]), ("ear pads", ["ear cushions"])],
        "brands": ["Sony", "Bose", "Apple", "Sennheiser", "JBL", "Beats", "Audio-Technica", "Skullcandy"],
        "colors": ["black", "white", "blue", "silver", "red"],
        "specs": ["noise cancelling", "bluetooth", "wired", "wireless"],
        "price": 110.0,
    },
    "Kitchen Appliances": {
        "ptypes": [("blender", ["smoothie maker"]), ("air fryer", ["airfryer"]), ("coffee maker", ["coffee machine"]),
                   ("stand mixer", ["kitchen mixer"])],
        "brands": ["KitchenAid", "Ninja", "Cuisinart", "Breville", "Hamilton Beach", "Vitamix", "Keurig", "Instant"],
        "colors": ["black", "red", "white", "silver", "blue"],
        "specs": ["1000w", "5 quart", "12 cup", "stainless steel"],
        "price": 95.0,
    },
    "Video Games": {
        "ptypes": [("game console", ["console", "gaming system"]), ("controller", ["gamepad"]),
                   ("video game", ["game disc"]), ("gaming headset", ["gaming headphones"])],
        "brands": ["Sony", "Microsoft", "Nintendo", "Razer", "Logitech", "Turtle Beach", "SteelSeries", "Sega"],
        "colors": ["black", "white", "red", "blue", "gray"],
        "specs": ["1tb", "digital edition", "wireless", "limited edition"],
        "price": 150.0,
    },
}

NOISE_WORDS = ["New", "NEW", "Brand New", "Genuine", "OEM", "Free Shipping", "Fast Ship", "L@@K", "Authentic",
               "Used", "Excellent", "Lot of 2", "Bundle", "Original", "2026", "Sealed", "Open Box"]

# Keyphrase templates over the item attributes; the fields a template names are its constraints.
TEMPLATES: list[tuple[str, tuple[str, ...]]] = [
    ("{ptype}", ("ptype",)),
    ("{brand} {ptype}", ("brand", "ptype")),
    ("{color} {ptype}", ("color", "ptype")),
    ("{brand} {color} {ptype}", ("brand", "color", "ptype")),
    ("{ptype} {spec}", ("ptype", "spec")),
    ("{brand} {ptype} {spec}", ("brand", "ptype", "spec")),
    ("{brand}", ("brand",)),
]
MODEL_TEMPLATES: list[tuple[str, tuple[str, ...]]] = [
    ("{brand} {model}", ("brand", "model")),
    ("{brand} {model} {ptype}", ("brand", "model", "ptype")),
    ("{model} {color}", ("model", "color")),
    ("{brand} {model} {spec}", ("brand", "model", "spec")),
]
