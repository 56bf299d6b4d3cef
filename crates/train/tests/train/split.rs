//! The train/validation split is deterministic and disjoint.

use tunelab_train::data::split_train_validation;

#[test]
fn the_same_seed_gives_the_same_disjoint_split() {
    let items: Vec<u32> = (0..200).collect();
    let a = split_train_validation(items.clone(), 0.1, 7).unwrap();
    let b = split_train_validation(items.clone(), 0.1, 7).unwrap();
    assert_eq!(a, b, "same inputs, same split");
    assert_eq!(a.validation.len(), 20);
    assert_eq!(a.train.len(), 180);
    assert!(
        a.validation.iter().all(|v| !a.train.contains(v)),
        "no item is in both"
    );
    let mut all: Vec<u32> = a.train.iter().chain(&a.validation).copied().collect();
    all.sort_unstable();
    assert_eq!(all, items, "every item lands somewhere, once");
    assert!(
        a.train.windows(2).all(|w| w[0] < w[1]),
        "both parts keep the file's order"
    );
    assert!(a.validation.windows(2).all(|w| w[0] < w[1]));

    let other = split_train_validation(items.clone(), 0.1, 8).unwrap();
    assert_ne!(
        a.validation, other.validation,
        "another seed sets other items aside"
    );
    let spread = a.validation.iter().filter(|&&v| v >= 100).count();
    assert!(
        (3..=17).contains(&spread),
        "the validation items come from the whole file: {:?}",
        a.validation
    );
    let none = split_train_validation(items, 0.0, 7).unwrap();
    assert!(none.validation.is_empty());
}
