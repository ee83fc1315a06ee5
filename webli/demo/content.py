"""Hand-written multilingual text used by the demo site.

Everything a human would read on the demo site lives here: languages,
interface strings, photo descriptions (alt texts) and the words painted
into sign/banner images. Keeping it apart from the generator code makes
both easier to review.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    """A content language of the demo site."""

    code: str  # BCP 47 primary tag, used as the directory name
    name: str
    script: str  # ISO 15924 code of the main script
    html_lang: str  # value for <html lang>, when a page declares it
    direction: str = "ltr"


LANGUAGES: dict[str, Language] = {
    "en": Language("en", "English", "Latn", "en"),
    "de": Language("de", "Deutsch", "Latn", "de"),
    "fr": Language("fr", "Français", "Latn", "fr-FR"),
    "ru": Language("ru", "Русский", "Cyrl", "ru"),
    "el": Language("el", "Ελληνικά", "Grek", "el"),
    "ar": Language("ar", "العربية", "Arab", "ar", direction="rtl"),
    "hi": Language("hi", "हिन्दी", "Deva", "hi"),
    "ja": Language("ja", "日本語", "Jpan", "ja"),
}

# Interface strings per language: page titles, intro paragraph, link texts.
UI: dict[str, dict[str, str]] = {
    "en": {
        "gallery": "Photo gallery",
        "signs": "Signs and banners",
        "archive": "Archive",
        "intro": "Photos from our collection, with descriptions.",
        "more": "More pictures",
        "back": "Back",
    },
    "de": {
        "gallery": "Fotogalerie",
        "signs": "Schilder und Banner",
        "archive": "Archiv",
        "intro": "Fotos aus unserer Sammlung mit Beschreibungen.",
        "more": "Weitere Bilder",
        "back": "Zurück",
    },
    "fr": {
        "gallery": "Galerie de photos",
        "signs": "Panneaux et bannières",
        "archive": "Archives",
        "intro": "Des photos de notre collection, avec leurs descriptions.",
        "more": "Plus d'images",
        "back": "Retour",
    },
    "ru": {
        "gallery": "Фотогалерея",
        "signs": "Вывески и баннеры",
        "archive": "Архив",
        "intro": "Фотографии из нашей коллекции с описаниями.",
        "more": "Ещё изображения",
        "back": "Назад",
    },
    "el": {
        "gallery": "Συλλογή φωτογραφιών",
        "signs": "Πινακίδες και πανό",
        "archive": "Αρχείο",
        "intro": "Φωτογραφίες από τη συλλογή μας, με περιγραφές.",
        "more": "Περισσότερες εικόνες",
        "back": "Πίσω",
    },
    "ar": {
        "gallery": "معرض الصور",
        "signs": "لافتات وإعلانات",
        "archive": "الأرشيف",
        "intro": "صور من مجموعتنا مع أوصافها.",
        "more": "مزيد من الصور",
        "back": "رجوع",
    },
    "hi": {
        "gallery": "फ़ोटो गैलरी",
        "signs": "संकेत और बैनर",
        "archive": "संग्रह",
        "intro": "हमारे संग्रह की तस्वीरें, विवरण के साथ।",
        "more": "और तस्वीरें",
        "back": "वापस",
    },
    "ja": {
        "gallery": "フォトギャラリー",
        "signs": "看板とバナー",
        "archive": "アーカイブ",
        "intro": "私たちのコレクションの写真と説明です。",
        "more": "その他の画像",
        "back": "戻る",
    },
}

# Alt texts for every photo, per language. Keys are photo names (see images.PHOTOS).
PHOTO_ALTS: dict[str, dict[str, str]] = {
    "astronaut": {
        "en": "An astronaut in a white suit in front of the US flag",
        "de": "Ein Astronaut im weißen Anzug vor der US-Flagge",
        "fr": "Un astronaute en combinaison blanche devant le drapeau américain",
        "ru": "Астронавт в белом скафандре на фоне флага США",
        "el": "Αστροναύτης με λευκή στολή μπροστά στη σημαία των ΗΠΑ",
        "ar": "رائد فضاء ببدلة بيضاء أمام علم الولايات المتحدة",
        "hi": "अमेरिकी झंडे के सामने सफ़ेद सूट में एक अंतरिक्ष यात्री",
        "ja": "アメリカ国旗の前に立つ白い宇宙服の宇宙飛行士",
    },
    "coffee": {
        "en": "A cup of espresso on a red saucer with a spoon, on a wooden table",
        "de": "Eine Tasse Espresso auf einer roten Untertasse mit Löffel, auf einem Holztisch",
        "fr": "Une tasse d'espresso sur une soucoupe rouge avec une cuillère, sur une table en bois",
        "ru": "Чашка эспрессо на красном блюдце с ложкой на деревянном столе",
        "el": "Ένα φλιτζάνι εσπρέσο σε κόκκινο πιατάκι με κουτάλι, πάνω σε ξύλινο τραπέζι",
        "ar": "فنجان إسبريسو على صحن أحمر مع ملعقة فوق طاولة خشبية",
        "hi": "लकड़ी की मेज़ पर लाल तश्तरी और चम्मच के साथ एस्प्रेसो का एक कप",
        "ja": "木のテーブルに置かれた、赤いソーサーとスプーン付きのエスプレッソ",
    },
    "chelsea": {
        "en": "Chelsea, a tabby cat, looking to the side",
        "de": "Chelsea, eine getigerte Katze, schaut zur Seite",
        "fr": "Chelsea, une chatte tigrée, regarde sur le côté",
        "ru": "Полосатая кошка Челси смотрит в сторону",
        "el": "Η Τσέλσι, μια τιγρέ γάτα, κοιτάζει στο πλάι",
        "ar": "القطة تشيلسي المخططة تنظر إلى الجانب",
        "hi": "चेल्सी नाम की धारीदार बिल्ली बगल की ओर देखती हुई",
        "ja": "横を向いているトラ猫のチェルシー",
    },
    "rocket": {
        "en": "A rocket on the launch pad at dusk, between lightning towers",
        "de": "Eine Rakete auf der Startrampe in der Abenddämmerung, zwischen Blitzschutztürmen",
        "fr": "Une fusée sur le pas de tir au crépuscule, entre des tours paratonnerres",
        "ru": "Ракета на стартовой площадке в сумерках между молниеотводами",
        "el": "Ένας πύραυλος στην εξέδρα εκτόξευσης το σούρουπο, ανάμεσα σε αλεξικέραυνους πύργους",
        "ar": "صاروخ على منصة الإطلاق عند الغسق بين أبراج مانعة للصواعق",
        "hi": "शाम के धुंधलके में लॉन्च पैड पर खड़ा एक रॉकेट, तड़ित टावरों के बीच",
        "ja": "夕暮れの発射台に立つロケットと避雷塔",
    },
    "camera": {
        "en": "Black-and-white photo of a man looking through a camera on a tripod",
        "de": "Schwarzweißfoto eines Mannes, der durch eine Kamera auf einem Stativ blickt",
        "fr": "Photo en noir et blanc d'un homme regardant dans une caméra sur un trépied",
        "ru": "Чёрно-белое фото мужчины, смотрящего в камеру на штативе",
        "el": "Ασπρόμαυρη φωτογραφία ενός άνδρα που κοιτάζει μέσα από μια κάμερα σε τρίποδο",
        "ar": "صورة بالأبيض والأسود لرجل ينظر عبر كاميرا مثبتة على حامل ثلاثي",
        "hi": "तिपाई पर रखे कैमरे में देखते हुए एक आदमी की श्वेत-श्याम तस्वीर",
        "ja": "三脚に載せたカメラをのぞき込む男性の白黒写真",
    },
    "coins": {
        "en": "Rows of ancient Greek coins on a dark background",
        "de": "Reihen antiker griechischer Münzen auf dunklem Hintergrund",
        "fr": "Des rangées de pièces grecques antiques sur fond sombre",
        "ru": "Ряды древнегреческих монет на тёмном фоне",
        "el": "Σειρές από αρχαία ελληνικά νομίσματα σε σκούρο φόντο",
        "ar": "صفوف من العملات اليونانية القديمة على خلفية داكنة",
        "hi": "गहरे रंग की पृष्ठभूमि पर प्राचीन यूनानी सिक्कों की कतारें",
        "ja": "暗い背景に並ぶ古代ギリシャの硬貨",
    },
    "immunohistochemistry": {
        "en": "Microscope image of tissue stained brown and blue",
        "de": "Mikroskopaufnahme von braun und blau gefärbtem Gewebe",
        "fr": "Image au microscope d'un tissu coloré en brun et en bleu",
        "ru": "Микроскопический снимок ткани, окрашенной в коричневый и синий цвета",
        "el": "Μικροσκοπική εικόνα ιστού χρωματισμένου καφέ και μπλε",
        "ar": "صورة مجهرية لنسيج مصبوغ باللونين البني والأزرق",
        "hi": "भूरे और नीले रंग में रंगे ऊतक की सूक्ष्मदर्शी छवि",
        "ja": "茶色と青に染色された組織の顕微鏡画像",
    },
    "hubble": {
        "en": "The Hubble Deep Field: countless distant galaxies in the dark sky",
        "de": "Das Hubble Deep Field: unzählige ferne Galaxien am dunklen Himmel",
        "fr": "Le champ profond de Hubble : d'innombrables galaxies lointaines dans le ciel noir",
        "ru": "Глубокое поле Хаббла: бесчисленные далёкие галактики на тёмном небе",
        "el": "Το Βαθύ Πεδίο του Χαμπλ: αμέτρητοι μακρινοί γαλαξίες στον σκοτεινό ουρανό",
        "ar": "حقل هابل العميق: مجرات بعيدة لا تحصى في السماء المظلمة",
        "hi": "हबल डीप फ़ील्ड: अंधेरे आकाश में अनगिनत दूर की आकाशगंगाएँ",
        "ja": "ハッブル・ディープ・フィールド：暗い空に広がる無数の遠い銀河",
    },
    "retina": {
        "en": "Photo of a human retina with red blood vessels",
        "de": "Aufnahme einer menschlichen Netzhaut mit roten Blutgefäßen",
        "fr": "Photo d'une rétine humaine avec des vaisseaux sanguins rouges",
        "ru": "Снимок сетчатки человеческого глаза с красными кровеносными сосудами",
        "el": "Φωτογραφία ανθρώπινου αμφιβληστροειδούς με κόκκινα αιμοφόρα αγγεία",
        "ar": "صورة لشبكية عين بشرية تظهر فيها الأوعية الدموية الحمراء",
        "hi": "लाल रक्त वाहिकाओं के साथ मानव रेटिना की तस्वीर",
        "ja": "赤い血管が見える人間の網膜の写真",
    },
    "moon": {
        "en": "Grey surface of the Moon with small craters",
        "de": "Graue Mondoberfläche mit kleinen Kratern",
        "fr": "Surface grise de la Lune parsemée de petits cratères",
        "ru": "Серая поверхность Луны с небольшими кратерами",
        "el": "Γκρίζα επιφάνεια της Σελήνης με μικρούς κρατήρες",
        "ar": "سطح القمر الرمادي مع فوهات صغيرة",
        "hi": "छोटे गड्ढों वाली चंद्रमा की धूसर सतह",
        "ja": "小さなクレーターのある灰色の月面",
    },
    "motorcycle": {
        "en": "A red motorcycle parked in a garage workshop",
        "de": "Ein rotes Motorrad, in einer Garagenwerkstatt geparkt",
        "fr": "Une moto rouge garée dans un atelier de garage",
        "ru": "Красный мотоцикл в гаражной мастерской",
        "el": "Μια κόκκινη μοτοσικλέτα σταθμευμένη σε συνεργείο",
        "ar": "دراجة نارية حمراء متوقفة في ورشة مرآب",
        "hi": "गैराज की वर्कशॉप में खड़ी एक लाल मोटरसाइकिल",
        "ja": "ガレージの作業場に停められた赤いオートバイ",
    },
}

# A legitimately descriptive alt text that is longer than 300 characters.
LONG_DESCRIPTIVE_ALT = (
    "The Hubble Deep Field, photographed by the Hubble Space Telescope over ten "
    "consecutive days in December 1995: a tiny patch of sky near the Big Dipper, "
    "no bigger than a grain of sand held at arm's length, turns out to contain "
    "thousands of galaxies of every shape and colour, some of them so distant that "
    "their light left them more than ten billion years ago."
)

# Keyword stuffing, the classic junk alt text; also longer than 300 characters.
KEYWORD_STUFFED_ALT = (
    "galaxy galaxies space wallpaper hd free download space wallpaper 4k galaxy "
    "background stars universe nasa hubble deep field wallpaper free space images "
    "best galaxy pictures cheap posters buy now space art galaxy wallpaper hd "
    "galaxy wallpaper 4k download free stars night sky astronomy photo photography "
    "cosmos nebula telescope image hd"
)


@dataclass(frozen=True)
class SignText:
    """Words painted into a generated image, plus how pages describe it."""

    slug: str
    lang: str
    text: str
    style: str  # "sign", "banner" or "screenshot"
    alt: str  # alt text used where the image is embedded ("" = decorative)


SIGN_TEXTS: list[SignText] = [
    SignText("exit", "en", "EMERGENCY EXIT", "sign", "Emergency exit sign"),
    SignText("sale", "en", "Summer Sale: 50% off all books", "banner",
             "Banner: Summer Sale: 50% off all books"),
    SignText("settings", "en", "Settings\nWi-Fi: Connected\nBluetooth: Off\nBattery: 82%",
             "screenshot", "Screenshot of a settings window"),
    SignText("feeding", "de", "Bitte nicht füttern!", "sign", "Schild: Bitte nicht füttern!"),
    SignText("hours", "de", "Öffnungszeiten: Mo–Fr 9–18 Uhr", "banner", ""),
    SignText("closed", "fr", "Fermé le dimanche", "sign", "Panneau « Fermé le dimanche »"),
    SignText("smoking", "fr", "Défense de fumer", "banner", ""),
    SignText("paint", "ru", "Осторожно, окрашено", "sign", "Табличка «Осторожно, окрашено»"),
    SignText("library", "ru", "Добро пожаловать в библиотеку", "banner", ""),
    SignText("settings", "ru", "Настройки\nЯзык: русский\nЗвук: включён",
             "screenshot", "Снимок экрана с окном настроек"),
    SignText("exit", "el", "Έξοδος κινδύνου", "sign", "Πινακίδα εξόδου κινδύνου"),
    SignText("museum", "el", "Καλώς ήρθατε στο μουσείο", "banner", ""),
    SignText("smoking", "ar", "ممنوع التدخين", "sign", "لافتة ممنوع التدخين"),
    SignText("library", "ar", "مرحبا بكم في المكتبة", "banner", ""),
    SignText("smoking", "hi", "धूम्रपान निषेध", "sign", "धूम्रपान निषेध का बोर्ड"),
    SignText("library", "hi", "पुस्तकालय में आपका स्वागत है", "banner", ""),
    SignText("exit", "ja", "非常口", "sign", "非常口の案内表示"),
    SignText("library", "ja", "図書館へようこそ", "banner", ""),
]

CONFIDENTIAL_SIGN = SignText(
    "confidential", "en", "CONFIDENTIAL - INTERNAL ONLY", "sign", "Confidential sign"
)

# Text of the SVG diagram (an SVG's text is part of its markup, not pixels).
SVG_TEXT = "crawl → extract → filter"
